"""Where settings come from, highest first: code, the environment, the YAML file, the defaults.

pydantic-settings merges the sources' dictionaries key by key. Values passed in
code arrive as section models (``RedisSettings(url=...)``), which it cannot
merge: a whole ``redis`` section from the environment would replace the model,
or the model every key of the environment. So a model passed in code is turned
into the keys it was given explicitly (``{"url": ...}``); the keys it leaves
unset come from the layers below, as for a section written in YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from worker.envvars import is_setting

# The YAML file's data while load_settings builds a Settings (a source cannot take arguments).
YAML_DATA: ContextVar[Mapping[str, Any] | None] = ContextVar("vipflow_yaml_data", default=None)


def explicit_keys(value: Any) -> Any:
    """``value`` with every model in it replaced by a dict of the keys set explicitly (by alias)."""
    if isinstance(value, BaseModel):
        return explicit_keys(value.model_dump(exclude_unset=True, by_alias=True))
    if isinstance(value, Mapping):
        return {k: explicit_keys(v) for k, v in value.items()}
    return value


class _Mapping(PydanticBaseSettingsSource):
    """A source holding a ready dict of sections."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]):
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


class CodeSource(_Mapping):
    """The values passed to ``Settings(...)``, key by key."""

    def __init__(self, settings_cls: type[BaseSettings], init: PydanticBaseSettingsSource):
        super().__init__(settings_cls, explicit_keys(getattr(init, "init_kwargs", {})))


class YamlSource(_Mapping):
    """The configuration file's sections, as load_settings read them (none outside load_settings)."""

    def __init__(self, settings_cls: type[BaseSettings]):
        super().__init__(settings_cls, YAML_DATA.get() or {})


class KnownEnvSource(EnvSettingsSource):
    """The environment without the ``VIPFLOW_*`` variables that set nothing: those are warned about
    (``worker.envvars``) and ignored, never an "unknown key" error (``VIPFLOW_REDIS__URLL``)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = super()._load_env_vars()
        return {name: value for name, value in env.items() if is_setting(self.settings_cls, name)}
