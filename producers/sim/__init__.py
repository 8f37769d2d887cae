"""The VIP Connect simulator (VIP API and operator wallet over real HTTP) and a notification sender.

Nothing here imports the web framework at module top except ``vip_app`` and
``wallet_app``, which only ``server.run_simulator`` loads.
"""
