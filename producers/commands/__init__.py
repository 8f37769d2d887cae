"""The ``vipflow`` subcommands that the producers package owns."""
