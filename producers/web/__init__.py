"""``vipflow web``: the operator site's HTTP API (``/api/v1``), authenticated with API tokens, and the
review workspace's pages (``producers.web.workspace``), with logins and cookie sessions.

Public: ``create_app(settings, ...)`` (the ASGI app, in ``producers.web.app``) and
``serve(settings)`` (uvicorn, in ``producers.web.server``); imported on use so that the CLI
starts fast.
"""
