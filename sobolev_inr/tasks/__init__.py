"""Task pieces (evaluation, figures) that the thin scripts under Experiments/ put together."""
