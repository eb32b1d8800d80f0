"""Every flag of every trainer and pack tool explains itself in --help (users start runs from the
command line and from the GUI's training window, which shows these texts)."""

from __future__ import annotations

import argparse
import importlib

import pytest

MODULES = ["trainers.stylegan2", "trainers.encoder", "trainers.crg", "trainers.distill", "trainers.distill_data",
           "trainers.pack.build_pack", "trainers.pack.directions", "trainers.pack.derive_profile",
           "trainers.pack.pack_data", "trainers.pack.gpu_session_merge"]


class _Captured(Exception):
    pass


def _parser(module: str, monkeypatch) -> argparse.ArgumentParser:
    seen: list[argparse.ArgumentParser] = []

    def capture(self, args=None, namespace=None):
        seen.append(self)
        raise _Captured

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    mod = importlib.import_module(module)
    entry = getattr(mod, "parse_args", None) or mod.main
    with pytest.raises(_Captured):
        entry([])
    return seen[0]


def _walk(ap: argparse.ArgumentParser):
    for action in ap._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _walk(sub)
        elif not isinstance(action, argparse._HelpAction):
            yield action


@pytest.mark.parametrize("module", MODULES)
def test_every_flag_has_help(module, monkeypatch):
    ap = _parser(module, monkeypatch)
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in _walk(ap)
               if not (a.help and a.help.strip()) and a.help != argparse.SUPPRESS]
    assert not missing, f"{module}: flags without --help text: {missing}"


def test_help_names_config_defaults(monkeypatch):
    """Config-field flags parse to None (so a run can tell flags given from those left out), so their
    defaults reach --help through the help text itself."""
    helps = {a.dest: a.help for a in _walk(_parser("trainers.stylegan2", monkeypatch))}
    assert helps["r1_every"].endswith("(default 16)")
    assert helps["mirror"].endswith("(default true)")
    assert "--cfg preset" in helps["resolution"]
    helps = {a.dest: a.help for a in _walk(_parser("trainers.encoder", monkeypatch))}
    assert helps["abort_patience"].endswith("(default 10)")
    assert "(default" not in helps["desc"]  # an empty default is not shown
