"""Named lists (issue 10): kept in the ledger (``store``), read by running workers (``holder``), imported
from CSV files (``csvfile``). What a list holds and how facts match it is ``rules.lists``."""
