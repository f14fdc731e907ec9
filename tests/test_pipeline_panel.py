"""PipelineCheckpointPanel headless: real widgets, real TF, clicks via ``button.click()``."""

from __future__ import annotations

import threading

import pytest
from test_pipeline import Recorder, ids_estimator, ids_input_fn

from nbhooks.events import StepEvent
from nbhooks.hooks.pipeline import PipelineCheckpointHook
from nbhooks.publish import Publisher
from nbhooks.views.checkpoints import PipelineCheckpointPanel


@pytest.fixture
def trained(model_dir):
    est = ids_estimator(model_dir, every=3)
    hook = PipelineCheckpointHook(est)
    est.train(ids_input_fn(), hooks=[hook], steps=6)
    panel = PipelineCheckpointPanel(hook)
    publisher = Publisher(hook.events, [panel])
    yield est, hook, panel, publisher
    publisher.close()


def shown(panel: PipelineCheckpointPanel) -> list[str]:
    return [label for label, _ in panel.list.options]


def test_the_panel_lists_checkpoints_and_has_its_css_classes(trained):
    _, _, panel, _ = trained
    assert "nbh-pipeline" in panel.widget._dom_classes
    assert [b._dom_classes for b in panel.buttons] == [
        ("nbh-save",),
        ("nbh-restore",),
        ("nbh-delete",),
    ]
    assert "nbh-pipeline-status" in panel.status._dom_classes
    labels = shown(panel)
    assert [label.split(" · ")[0] for label in labels] == ["step 6", "step 3"]  # none at 0
    assert labels[0].endswith("auto · next start") and " kB · " in labels[0]


def test_idle_clicks_save_restore_and_delete(trained):
    _, hook, panel, publisher = trained
    panel.save_button.click()
    publisher.flush()
    assert shown(panel)[0].startswith("step 6") and "manual" in shown(panel)[0]
    assert "pinned position of step 6" in panel.status.value

    panel.list.value = hook.store.find(3).path
    panel.restore_button.click()
    publisher.flush()
    assert "next train() resumes the pipeline at the position of step 3" in panel.status.value
    assert "next start" in next(label for label in shown(panel) if label.startswith("step 3"))

    panel.list.value = str(hook.store.dir / "input.ckpt-6")  # the automatic one of step 6
    panel.delete_button.click()
    publisher.flush()
    assert not any(label.startswith("step 6") and "auto" in label for label in shown(panel))
    assert "deleted input.ckpt-6" in panel.status.value

    panel.list.value = hook.store.find(3).path  # the next start: refused, shown in red
    panel.delete_button.click()
    publisher.flush()
    assert "⚠" in panel.status.value and "restore another checkpoint first" in panel.status.value
    assert any(label.startswith("step 3") for label in shown(panel))


def test_buttons_are_disabled_while_a_save_waits_for_the_step_boundary(trained):
    est, hook, panel, publisher = trained
    reached, go = threading.Event(), threading.Event()

    def hold() -> None:
        reached.set()
        assert go.wait(30)

    rec = Recorder({8: hold})
    worker = threading.Thread(
        target=est.train, args=(ids_input_fn(),), kwargs={"hooks": [rec, hook], "steps": 4}
    )
    worker.start()
    try:
        assert reached.wait(60)
        panel.save_button.click()  # queued: training is held inside step 8's after_run
        panel.save_button.click()  # ignored: one is pending
        assert hook.pending == 1
        publisher.flush()
        assert all(b.disabled for b in panel.buttons)
        assert "at the next step boundary" in panel.status.value
    finally:
        go.set()
        worker.join(60)
    publisher.flush()
    assert not panel.save_button.disabled and not panel.restore_button.disabled
    manual = [c.path for c in hook.store.list() if c.kind == "manual"]
    assert [panel.list.value] == manual  # the new save, selected at once
    panel.list.value = None
    assert panel.delete_button.disabled and panel.restore_button.disabled  # nothing selected
    panel.list.value = panel.list.options[-1][1]
    assert not panel.delete_button.disabled
    with pytest.raises(TypeError, match="needs the checkpoint to delete"):
        hook.delete(None)
    assert "saved position of step 8" in panel.status.value
    assert hook.checkpoints.query("kind == 'manual'").step.tolist() == [8]
    assert rec.steps == [7, 8, 9, 10]


def test_a_panel_made_while_training_starts_shows_what_its_first_events_missed(model_dir):
    """A dashboard shown in the cell that starts training makes its panel while the hook's
    begin() runs: the "paused" warning can go out between the panel reading the hook's status
    and the publisher feeding the panel. The panel's next batch says it all the same."""
    est = ids_estimator(model_dir)
    hook = PipelineCheckpointHook(est, automatic_limit=1000)  # the buffer: 7 x ~250 bytes
    panel = PipelineCheckpointPanel(hook)  # made first; the hook's events reach no publisher
    assert "no pipeline checkpoint restored yet" in panel.status.value
    est.train(ids_input_fn(), hooks=[hook], steps=3)  # begin(): the warning, missed
    panel.on_events([StepEvent(3, None, None, 0.1, None)])  # the panel's first batch
    assert "⚠ automatic input checkpoints paused" in panel.status.value
    publisher = Publisher(hook.events, [panel])
    panel.save_button.click()  # what the events say still shows after: here, a refusal
    publisher.flush()
    assert "no position to save while idle" in panel.status.value
    publisher.close()
