"""Fixtures for tern's integration tests: each module boots the guests it
needs once and shares them between its tests (boots cost seconds)."""
import contextlib

import pytest

from ternvm import Vm


@pytest.fixture(scope="module")
def vm_factory(tmp_path_factory):
    vms = []

    def make(name="vm", **kwargs):
        vm = Vm(tmp_path_factory.mktemp(name), **kwargs)
        vms.append(vm)
        return vm

    yield make
    for vm in vms:
        with contextlib.suppress(Exception):
            vm.close()
