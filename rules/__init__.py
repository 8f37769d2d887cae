"""vipflow's rule language (work in progress; see the rules issue)."""
