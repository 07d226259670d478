"""Reporting: figures (:mod:`.plots`), raw outputs (:mod:`.outputs`), the papers' numbers (:mod:`.references`) and the summaries a report draws (:mod:`.summaries`)."""
