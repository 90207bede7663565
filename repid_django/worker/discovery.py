"""Autodiscovery: import ``tasks.py`` of every installed app and collect its actors.

Actors are found in two ways, and both may be mixed in one project:

* module-level :class:`~repid_django.engine.Router` objects in an app's ``tasks.py``
  (``router = Router()`` then ``@router.actor``, as in the Repid documentation);
* the app-wide :func:`repid_django.shortcuts.actor` decorator, which registers on the project's
  router wherever the function is defined.

Two different actors with one name are reported with a :class:`DuplicateActorWarning` naming
both places (and by ``manage.py check`` as ``repid_django.W010``); the later app in
``INSTALLED_APPS`` wins, like templates and static files.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from importlib import import_module
from types import ModuleType

from django.apps import AppConfig, apps
from django.utils.module_loading import module_has_submodule

from ..engine.actor import Actor
from ..engine.router import Router

logger = logging.getLogger("repid_django")

TASKS_MODULE = "tasks"


class DuplicateActorWarning(UserWarning):
    """Two different functions were registered under one actor name."""


class TasksImportError(ImportError):
    """An installed app's ``tasks.py`` failed to import; the message names the app."""


@dataclass(frozen=True, slots=True)
class Registration:
    actor: Actor
    module: str
    """Where the actor was found: the ``tasks`` module, or the module defining the function."""
    where: str
    """The function's dotted path."""


class ActorRegistry:
    """Every actor the project knows, by name, in discovery order."""

    def __init__(self) -> None:
        self._by_name: dict[str, list[Registration]] = {}
        self.shortcut_router = Router()
        """Where :func:`repid_django.shortcuts.actor` registers."""
        self.discovered = False

    def add(self, actor: Actor, module: str) -> None:
        found = self._by_name.setdefault(actor.name, [])
        if any(reg.actor.fn is actor.fn for reg in found):
            return
        fn = actor.fn
        where = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)!s}"
        found.append(Registration(actor, module, where))
        if len(found) > 1:
            first, last = found[0], found[-1]
            message = (
                f"two actors are named {actor.name!r}: {first.where} and {last.where}; "
                f"jobs named {actor.name!r} will run {last.where}. Give one of them another "
                "name (@actor(name=...)) to keep both."
            )
            logger.warning(message)
            warnings.warn(message, DuplicateActorWarning, stacklevel=2)

    def add_router(self, router: Router, module: str) -> None:
        for actor in router.actors.values():
            self.add(actor, module)

    def duplicates(self) -> dict[str, list[Registration]]:
        return {name: regs for name, regs in self._by_name.items() if len(regs) > 1}

    def actors(self) -> dict[str, Actor]:
        """Name to actor; on a duplicate name the last registration wins."""
        return {name: regs[-1].actor for name, regs in self._by_name.items()}

    def router(self) -> Router:
        """A fresh router holding every known actor (what ``runworker`` runs)."""
        router = Router()
        for actor in self.actors().values():
            router.add_actor(actor)
        return router

    def clear(self) -> None:
        self._by_name.clear()
        self.shortcut_router = Router()
        self.discovered = False


registry = ActorRegistry()


def import_tasks(app_config: AppConfig, module_name: str = TASKS_MODULE) -> ModuleType | None:
    """Import ``<app>.tasks``; ``None`` when the app has none, :class:`TasksImportError` when it
    exists but fails to import (the original error is chained)."""
    if app_config.module is None or not module_has_submodule(app_config.module, module_name):
        return None
    dotted = f"{app_config.name}.{module_name}"
    try:
        return import_module(dotted)
    except Exception as exc:
        raise TasksImportError(
            f"repid_django could not import {dotted} of the installed app "
            f"{app_config.label!r}: {type(exc).__name__}: {exc}. Fix that module (its traceback "
            "is above), or remove the app from INSTALLED_APPS."
        ) from exc


def collect(module: ModuleType, into: ActorRegistry | None = None) -> int:
    """Register the actors of every module-level ``Router`` of ``module``; returns how many."""
    target = into or registry
    count = 0
    for value in list(vars(module).values()):
        if isinstance(value, Router) and value is not target.shortcut_router:
            target.add_router(value, module.__name__)
            count += len(value.actors)
    return count


def autodiscover(module_name: str = TASKS_MODULE) -> ActorRegistry:
    """Import ``tasks.py`` of every installed app and register the actors found.

    Called by ``AppConfig.ready()``; calling it again only picks up what is new.
    """
    for app_config in apps.get_app_configs():
        module = import_tasks(app_config, module_name)
        if module is not None:
            collect(module)
    registry.discovered = True
    return registry


def project_router() -> Router:
    """Every actor of the project (autodiscovered routers and ``@actor`` functions)."""
    if not registry.discovered:
        autodiscover()
    return registry.router()
