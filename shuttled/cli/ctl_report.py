"""`shuttlectl report`: placeholder until the run report lands (issue 7 point 4)."""

from __future__ import annotations

import argparse

from shuttled.cli.common import fail
from shuttled.cli.ctl_client import Session


async def report_online(session: Session, args: argparse.Namespace) -> int:
    return fail("report is not available in this version")


def report_offline(args: argparse.Namespace) -> int:
    return fail("report is not available in this version")
