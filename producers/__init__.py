"""Everything that puts VIP Connect notifications on vipflow's queue."""
