"""Outcome labels: what happened to a transaction after its decision, and how each rule fared against them.

- :mod:`worker.labels.codes`: the labels (NACHA return codes, chargeback, confirmed fraud and good).
- :mod:`worker.labels.parse`: a labels CSV file (or an API request's items) to checked rows.
- :mod:`worker.labels.store`: recording a batch in the ledger, all or nothing, with its actor.
- :mod:`worker.labels.report`: the rules report (matches, outcomes, precision and recall per rule and
  per ruleset version).
"""
