"""Files written whole or not at all (nbhooks.atomic): on a real full tmpfs, and through
TensorFlow's file systems (``ram://``, as ``gs://`` would be)."""

from __future__ import annotations

import errno

import pytest
from test_faults import fill

from nbhooks._tf import tf
from nbhooks.atomic import write_text


def test_a_full_disk_keeps_the_earlier_file_and_leaves_no_temporary(tmpfs):
    disk = tmpfs("size=256k")
    target = disk / "report.html"
    write_text(target, "the earlier report")
    fill(disk, leave=8_000)
    with pytest.raises(OSError, match=r"could not write .*report\.html \(No space left") as info:
        write_text(target, "x" * 400_000)
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == "the earlier report"
    assert sorted(p.name for p in disk.iterdir()) == ["ballast", "report.html"]


def test_a_missing_folder_is_made(tmp_path):
    target = tmp_path / "reports" / "2026" / "run.csv"
    write_text(target, "step,value\n")
    assert target.read_text() == "step,value\n"
    assert [p.name for p in target.parent.iterdir()] == ["run.csv"]


def test_a_remote_path_is_written_through_tensorflow_file_systems():
    gfile = tf().io.gfile
    target = "ram://nbhooks-atomic/job/control.json"
    write_text(target, '{"action": "stop"}')
    write_text(target, '{"action": "resume"}')
    with gfile.GFile(target) as f:
        assert f.read() == '{"action": "resume"}'
    assert gfile.listdir("ram://nbhooks-atomic/job") == ["control.json"]
