"""The operator console in a real browser (SPEC §14): an operator runs a batch from the console
alone — sees 16 units live, uploads protocols (a bad one shows its located error), starts a batch
with batch and cartridge, confirms the operator step, holds with a reason (checked over OPC UA
too), acknowledges an alarm a fault file raised; QA approves the protocol; the batch record
opens through the person's own session.

The tests run in file order on one simulation: the run started on U02 is the one confirmed,
held and recorded later."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from console_rig import PASSWORD, Instrument, sign_in
from playwright.sync_api import Page, expect

from shuttled.client.opcua import open_connection, read_paths

GOOD = """\
shuttle_protocol: 1
name: console-steps
version: 1.0.0
description: A confirm step, then an hour at 37 °C
parameters:
  max_density: {default: 2.0e6, min: 5.0e5, max: 1.0e7, unit: cells/mL}
phases:
  - name: prepare
    temperature: 37.0
    steps:
      - confirm: {prompt: Connect the media bag, record: [media_lot]}
  - name: culture
    temperature: 37.0
    duration: 1h
"""
BAD = GOOD.replace("    duration: 1h", "    duraton: 1h")


def _upload(page: Page, base: str, tmp_path: Path, name: str, text: str, unit: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    page.goto(f"{base}/protocols")
    form = page.get_by_role("form", name="Upload a protocol")
    form.get_by_label("Protocol file").set_input_files(str(path))
    form.get_by_label("Unit").select_option(unit)
    form.get_by_role("button", name="Upload").click()


def _command(page: Page, base: str, unit: str, command: str, reason: str) -> None:
    """A state command from the unit page's Commands form, with its reason, accepted."""
    page.goto(f"{base}/units/{unit}")
    commands = page.get_by_role("form", name="Commands")
    commands.get_by_label("Reason").fill(reason)
    commands.get_by_role("button", name=command).click()
    expect(page.get_by_role("status")).to_contain_text(f"{command} accepted")


def test_sign_in_and_see_sixteen_units_update(instrument: Instrument, browser) -> None:
    page = sign_in(browser, instrument.console, "olga")
    for n in range(1, 17):
        expect(page.get_by_role("region", name=f"U{n:02d}")).to_be_visible()
    # every card receives a pushed value, and then a newer one, without a reload
    page.wait_for_function("document.querySelectorAll('[data-unit][data-t]').length === 16")
    first = page.evaluate("Object.fromEntries([...document.querySelectorAll('[data-unit]')]"
                          ".map(c => [c.dataset.unit, Number(c.dataset.t)]))")
    page.wait_for_function(
        "(first) => [...document.querySelectorAll('[data-unit]')]"
        ".every(c => Number(c.dataset.t) > first[c.dataset.unit])", arg=first)
    temperature = page.get_by_role("region", name="U07").locator('[data-field="temperature"]')
    expect(temperature).to_have_text(re.compile(r"^\d+\.\d\d$"))
    page.context.close()


def test_bad_protocol_upload_shows_each_error_at_its_line(instrument: Instrument, browser,
                                                          tmp_path: Path) -> None:
    page = sign_in(browser, instrument.console, "olga")
    _upload(page, instrument.console, tmp_path, "bad.yaml", BAD, "U02")
    errors = page.get_by_role("region", name="Errors in bad.yaml")
    line = BAD.splitlines().index("    duraton: 1h") + 1
    typo = errors.get_by_role("alert").filter(has_text="duraton")
    expect(typo).to_contain_text(
        re.compile(rf"bad\.yaml:{line}:\d+: unknown key 'duraton'.*did you mean 'duration'"))
    expect(typo.locator("pre")).to_contain_text("duraton: 1h")  # the line itself, shown
    page.context.close()


def test_start_a_batch_with_batch_and_cartridge(instrument: Instrument, browser,
                                                tmp_path: Path) -> None:
    page = sign_in(browser, instrument.console, "olga")
    _upload(page, instrument.console, tmp_path, "steps.yaml", GOOD, "U02")
    expect(page.get_by_role("status")).to_contain_text("console-steps@1.0.0#")
    page.goto(f"{instrument.console}/units/U02/start")
    chooser = page.get_by_label("Protocol", exact=True)
    chooser.select_option(chooser.locator("option", has_text="console-steps").text_content())
    page.get_by_role("button", name="Choose").click()
    start = page.get_by_role("form", name="Start")
    density = start.get_by_label(re.compile("^max_density"))
    expect(density).to_have_attribute("min", "500000.0")
    expect(density).to_have_attribute("max", "10000000.0")
    start.get_by_label("Batch").fill("DIN-W1234-26-000042")
    expect(start.get_by_label("Cartridge")).to_have_value("CRT-U02")
    start.get_by_label("Reason").fill("patient batch 42")
    start.get_by_role("button", name="Start").click()
    expect(page.get_by_role("status")).to_contain_text("Started CS-SIM-U02-")
    card = page.get_by_role("region", name="U02")
    expect(card.locator('[data-field="batch"]')).to_have_text("DIN-W1234-26-000042")
    expect(card.locator('[data-field="cartridge"]')).to_have_text("CRT-U02")
    page.goto(f"{instrument.console}/")
    overview = page.get_by_role("region", name="U02")
    expect(overview.locator('[data-field="batch"]')).to_have_text("DIN-W1234-26-000042")
    expect(overview.locator('[data-field="state"]')).to_have_text("RUNNING")
    page.context.close()


def test_confirm_the_operator_step(instrument: Instrument, browser) -> None:
    page = sign_in(browser, instrument.console, "olga")
    page.goto(f"{instrument.console}/units/U02")
    step = page.get_by_role("form", name="Confirm step")
    expect(page.get_by_role("heading", name="Operator step: Connect the media bag")).to_be_visible()
    step.get_by_label("media_lot").fill("ML-2026-117")
    step.get_by_label("Password").fill(PASSWORD["olga"])
    step.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("status")).to_contain_text("Step confirmed by olga; the run goes on")
    card = page.get_by_role("region", name="U02")
    expect(card.locator('[data-field="step"]')).not_to_have_text("Connect the media bag")
    page.context.close()


def test_hold_with_a_reason_changes_the_state(instrument: Instrument, browser) -> None:
    page = sign_in(browser, instrument.console, "olga")
    _command(page, instrument.console, "U02", "Hold", "check the bag")
    card = page.get_by_role("region", name="U02")
    expect(card.locator('[data-field="state"]')).to_have_text("HELD")
    expect(card.locator('[data-field="hold_reason"]')).to_have_text("check the bag")

    async def over_opcua() -> tuple[str, str]:
        conn = await open_connection(instrument.endpoint, "vic", PASSWORD["vic"],
                                     instrument.data_dir / "test-pki")
        try:
            state, reason = await read_paths(conn, conn.unit("U02"),
                                             [("State",), ("HoldReason",)])
            return state, reason
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API owns this thread's loop
        assert thread.submit(asyncio.run, over_opcua()).result() == ("HELD", "check the bag")
    page.context.close()


def test_the_unit_page_charts_the_run_so_far_from_the_daemons_history(
        instrument: Instrument, browser) -> None:
    page = sign_in(browser, instrument.console, "olga")
    page.goto(f"{instrument.console}/units/U02")
    expect(page.locator(".uplot")).to_have_count(3)  # temperature/heater, density, volume
    history = page.evaluate("fetch('/units/U02/history.json').then((r) => r.json())")
    times = history["data"][0]
    with sqlite3.connect(instrument.data_dir / "journal.sqlite3") as db:
        (run_id,) = db.execute("SELECT run_id FROM runs WHERE unit = 'U02'"
                               " ORDER BY started_at DESC LIMIT 1").fetchone()
        rows = db.execute("SELECT at, temperature FROM telemetry WHERE run_id = ? ORDER BY at",
                          (run_id,)).fetchall()
    assert len(rows) >= 3
    # Every row the journal kept since the run started is on the chart, at the daemon clock's
    # time (one fixed offset from process time), before the points the console saw live.
    offset = times[0] - rows[0][0]
    for at, temperature in rows:
        index = min(range(len(times)), key=lambda i: abs(times[i] - (at + offset)))
        assert abs(times[index] - (at + offset)) < 1e-3
        assert history["data"][1][index] == temperature
    assert times == sorted(times) and times[-1] >= rows[-1][0] + offset
    page.context.close()


def test_acknowledge_an_alarm_raised_by_the_fault_file(instrument: Instrument, browser) -> None:
    page = sign_in(browser, instrument.console, "olga")
    overview = page.get_by_role("region", name="U05")
    expect(overview.locator('[data-field="alarms"]')).to_contain_text("TEMPERATURE_SENSOR_BAD")
    page.goto(f"{instrument.console}/units/U05")
    form = page.get_by_role("form", name="Acknowledge TEMPERATURE_SENSOR_BAD")
    form.get_by_label("Comment").fill("sensor cable checked")
    form.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_role("status")).to_contain_text("TEMPERATURE_SENSOR_BAD acknowledged")
    alarm = page.get_by_role("group", name="Alarm TEMPERATURE_SENSOR_BAD")
    expect(alarm).to_contain_text("acknowledged by olga: sensor cable checked")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    page.context.close()


def test_qa_approves_the_protocol_with_a_signature(instrument: Instrument, browser) -> None:
    author = sign_in(browser, instrument.console, "olga")
    author.goto(f"{instrument.console}/protocols")
    submit = author.get_by_role("form", name=re.compile(r"^Submit console-steps@1\.0\.0#"))
    submit.get_by_label("Password").fill(PASSWORD["olga"])
    submit.get_by_role("button", name="Submit").click()
    expect(author.get_by_role("status")).to_contain_text("in_review (signed authored")
    expect(author.get_by_role("button", name="Approve")).to_have_count(0)  # operators do not
    author.context.close()

    qa = sign_in(browser, instrument.console, "quinn")
    qa.goto(f"{instrument.console}/protocols")
    approve = qa.get_by_role("form", name=re.compile(r"^Approve console-steps@1\.0\.0#"))
    approve.get_by_label("Password").fill(PASSWORD["quinn"])
    approve.get_by_label("Comment").fill("reviewed against the master batch record")
    approve.get_by_role("button", name="Approve").click()
    expect(qa.get_by_role("status")).to_contain_text("approved (signed approved by Quinn QA)")
    row = qa.get_by_role("group", name=re.compile(r"^console-steps@1\.0\.0#"))
    expect(row.locator(".state")).to_have_text("approved")
    expect(row).to_contain_text("approved by Quinn QA (quinn)")
    qa.context.close()


def test_open_the_batch_record(instrument: Instrument, browser) -> None:
    page = sign_in(browser, instrument.console, "quinn")
    page.goto(f"{instrument.console}/runs")
    row = page.get_by_role("group", name=re.compile(r"^CS-SIM-U02-"))
    run_id = row.get_attribute("aria-label")
    with page.expect_navigation():
        row.get_by_role("link", name="Batch record").click()
    assert page.url.endswith(f"/runs/{run_id}/record.html")
    expect(page.locator("body")).to_contain_text(run_id)
    expect(page.locator("body")).to_contain_text("DIN-W1234-26-000042")
    page.context.close()


def test_qa_reviews_and_releases_the_batch_record(instrument: Instrument, browser) -> None:
    operator = sign_in(browser, instrument.console, "olga")
    _command(operator, instrument.console, "U02", "Stop", "end of the batch")
    expect(operator.get_by_role("region", name="U02").locator('[data-field="state"]')
           ).to_have_text("STOPPED")
    operator.context.close()

    page = sign_in(browser, instrument.console, "quinn")
    page.goto(f"{instrument.console}/runs")
    run_id = page.get_by_role("group", name=re.compile(r"^CS-SIM-U02-")).get_attribute(
        "aria-label")
    for action, meaning in (("Review", "reviewed"), ("Release", "released")):
        form = page.get_by_role("form", name=f"{action} {run_id}")
        form.get_by_label("Password").fill(PASSWORD["quinn"])
        form.get_by_label("Comment").fill(f"{meaning} from the console")
        form.get_by_role("button", name=action).click()
        expect(page.get_by_role("status")).to_contain_text(
            f"{run_id}: {meaning} (signed {meaning} by Quinn QA)")
    page.goto(f"{instrument.console}/runs/{run_id}/record.html")
    expect(page.locator("body")).to_contain_text("Released ")
    expect(page.locator("body")).to_contain_text("by quinn")
    page.context.close()


def test_a_viewer_sees_no_command_buttons(instrument: Instrument, browser) -> None:
    page = sign_in(browser, instrument.console, "vic")
    expect(page.get_by_role("region", name="U16")).to_be_visible()
    for where in ("/units/U02", "/units/U05", "/protocols", "/runs"):
        page.goto(f"{instrument.console}{where}")
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        for name in ("Hold", "Restart", "Stop", "Abort", "Reset", "Start", "Acknowledge",
                     "Approve", "Confirm", "Upload", "Submit", "Shelve"):
            expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    page.context.close()


def test_a_supervisor_shelves_the_alarm(instrument: Instrument, browser) -> None:
    page = sign_in(browser, instrument.console, "sim")
    page.goto(f"{instrument.console}/units/U05")
    form = page.get_by_role("form", name="Shelve TEMPERATURE_SENSOR_BAD")
    form.get_by_label("Hours").fill("1")
    form.get_by_label("Reason").fill("sensor replacement ordered")
    form.get_by_role("button", name="Shelve").click()
    expect(page.get_by_role("status")).to_contain_text("TEMPERATURE_SENSOR_BAD shelved for 1 h")
    expect(page.get_by_role("group", name="Alarm TEMPERATURE_SENSOR_BAD")).to_contain_text(
        "shelved until")
    page.context.close()
