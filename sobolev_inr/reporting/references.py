"""The papers' published numbers (``reference_numbers.json``): per-run entries matched by ``exp_name``, and tables
over several runs (``protocol_tables``), which reports set beside ours."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REFERENCE_FILE = Path(__file__).with_name("reference_numbers.json")


def load_references() -> List[Dict]:
    return json.loads(REFERENCE_FILE.read_text())["references"]


def load_protocol_tables() -> Dict:
    """Published tables over several runs (``protocol_tables`` of the reference file)."""
    return json.loads(REFERENCE_FILE.read_text())["protocol_tables"]


def match_reference(exp_name: str, references: Sequence[Dict]) -> Optional[Dict]:
    """The published entry for a run: the longest ``match_exp_name`` that ends its exp_name."""
    hits = [r for r in references if exp_name == r["match_exp_name"] or exp_name.endswith("/" + r["match_exp_name"])]
    return max(hits, key=lambda r: len(r["match_exp_name"])) if hits else None
