"""Intake as a hostile or careless class would try it: names, folders, files and zips.

Every fixture is generated in ``tmp_path``; the real grader never runs here (reports are
written from :class:`autograder.results.Record` objects built by hand).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import stat
import struct
import unicodedata
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from autograder import repair, submissions
from autograder.submissions import ZipLimits, collect, student_id

TOY = ["toy", "toy2"]
NB = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def _h(raw: str | bytes) -> str:
    data = raw if isinstance(raw, bytes) else unicodedata.normalize("NFC", raw).encode()
    return hashlib.sha256(data).hexdigest()[:8]


def _nb(path: Path, text: str = NB, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _rows(found):
    return [(s.student, s.assignment, s.label, s.problem) for s in found]


# ---------------------------------------------------------------------------- identity


def test_ids_kept_when_safe_changed_names_get_a_stable_hash():
    assert student_id("alice") == "alice"
    assert student_id("Alice_Smith-2") == "Alice_Smith-2"
    assert student_id("Alice Smith") == f"Alice_Smith-{_h('Alice Smith')}"
    assert student_id("Zoë") == f"Zoe-{_h('Zoë')}"
    assert student_id(unicodedata.normalize("NFD", "Zoë")) == student_id("Zoë")
    assert student_id("Zoé") != student_id("Zoë")
    assert student_id("张伟") == f"student-{_h('张伟')}"
    assert student_id("Łukasz Żółć") == f"Lukasz_Zolc-{_h('Łukasz Żółć')}"
    assert student_id("con") == f"con-{_h('con')}"  # a Windows device name
    assert student_id("-rf") == f"rf-{_h('-rf')}"
    # a raw name that looks like a hashed id is hashed too: it cannot take a changed name's id
    looks_hashed = f"Alice_Smith-{_h('Alice Smith')}"
    assert student_id(looks_hashed) not in (looks_hashed, student_id("Alice Smith"))
    long = "a" * 240
    assert student_id(long) == "a" * 48 + "-" + _h(long)
    assert student_id("a" * 64) == "a" * 64 and student_id("a" * 65) != "a" * 65


def test_non_utf8_folder_name_is_graded_not_fatal(tmp_path):
    root = tmp_path / "submitted"
    _nb(root / "alice" / "toy" / "toy.ipynb")
    os.makedirs(os.fsencode(root) + b"/caf\xe9/toy")
    _nb(Path(os.fsdecode(os.fsencode(root) + b"/caf\xe9/toy/toy.ipynb")))
    found = collect(root, assignments=TOY)
    assert _rows(found) == [
        ("alice", "toy", "alice/toy/toy.ipynb", None),
        (f"caf-{_h(b'caf' + bytes([0xE9]))}", "toy", "caf\\xe9/toy/toy.ipynb", None),
    ]
    assert found[1].path.read_text() == NB  # the real file, found through its odd name


def test_collisions_never_merge_students(tmp_path):
    root = tmp_path / "submitted"
    for name in ("Alice Smith", "Alice_Smith", "Alice_Smith-2", "alice smith"):
        _nb(root / name / "toy" / "toy.ipynb")
    found = collect(root, assignments=TOY)
    assert _rows(found) == [
        (f"Alice_Smith-{_h('Alice Smith')}", "toy", "Alice Smith/toy/toy.ipynb", None),
        ("Alice_Smith-2", "toy", "Alice_Smith-2/toy/toy.ipynb", None),
        ("Alice_Smith", "toy", "Alice_Smith/toy/toy.ipynb", None),
        (f"alice_smith-{_h('alice smith')}", "toy", "alice smith/toy/toy.ipynb", None),
    ]


def test_copy_marker_is_the_same_student_and_one_file_is_graded(tmp_path):
    _nb(tmp_path / "bob_toy.ipynb", mtime=1_000_000)
    _nb(tmp_path / "bob_toy (1).ipynb", mtime=2_000_000)  # re-uploaded later
    _nb(tmp_path / "bob-2_toy.ipynb")  # another student, whose id is exactly bob-2
    found = collect(tmp_path, assignments=TOY)
    assert _rows(found) == [
        ("bob-2", "toy", "bob-2_toy.ipynb", None),
        ("bob", "toy", "bob_toy (1).ipynb", None),
    ]
    assert found[1].notes == (
        "2 notebooks for toy: graded bob_toy (1).ipynb (the newest)",
        "extra file not graded: bob_toy.ipynb (an older copy)",
    )


def test_hash_collision_of_two_changed_names_gets_longer_hashes(tmp_path, monkeypatch):
    from autograder import student_names

    real = student_names.digest
    monkeypatch.setattr(
        student_names,
        "digest",
        lambda text, digits=8: "0" * 8 if digits == 8 else real(text, digits),
    )
    _nb(tmp_path / "submitted" / "Zoë" / "toy" / "toy.ipynb")
    _nb(tmp_path / "submitted" / "Zoé" / "toy" / "toy.ipynb")
    found = collect(tmp_path / "submitted", assignments=TOY)
    assert sorted(s.student for s in found) == sorted(
        [f"Zoe-{real('Zoë', 16)}", f"Zoe-{real('Zoé', 16)}"]
    )


def test_non_ascii_names_are_readable_and_mapped_back(tmp_path):
    root = tmp_path / "submitted"
    for name in ("Zoë", "Zoé", "张伟", "Ana María"):
        _nb(root / name / "toy" / "toy.ipynb")
    found = collect(root, assignments=TOY)
    assert {s.student: s.label for s in found} == {
        f"Zoe-{_h('Zoë')}": "Zoë/toy/toy.ipynb",
        f"Zoe-{_h('Zoé')}": "Zoé/toy/toy.ipynb",
        f"student-{_h('张伟')}": "张伟/toy/toy.ipynb",
        f"Ana_Maria-{_h('Ana María')}": "Ana María/toy/toy.ipynb",
    }


def test_ids_and_labels_do_not_depend_on_listing_order(tmp_path, monkeypatch):
    root = tmp_path / "submitted"
    for name in ("Zoë", "alice", "Alice Smith", "bob"):
        _nb(root / name / "toy" / "toy.ipynb", mtime=400_000_000)
        _nb(root / name / "toy" / "copy.ipynb", mtime=400_000_000)
    first = collect(root, assignments=TOY)
    walk = os.walk

    def reversed_walk(top, **kwargs):
        for dirpath, dirnames, filenames in walk(top, **kwargs):
            dirnames.reverse()
            yield dirpath, dirnames, list(reversed(filenames))

    monkeypatch.setattr(os, "walk", reversed_walk)  # (the listing walks with os.walk)
    again = collect(root, assignments=TOY)
    assert [(s.student, s.label, s.notes) for s in again] == [
        (s.student, s.label, s.notes) for s in first
    ]
    # the same class in a .zip, members in the opposite order: the same ids
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(root.rglob("*.ipynb"), reverse=True):
            bundle.write(path, "submitted/" + path.relative_to(root).as_posix())
    zipped = collect(archive, assignments=TOY, unpack_dir=tmp_path / "u")
    assert sorted(s.student for s in zipped) == sorted(s.student for s in first)


# ---------------------------------------------------------------------------- misattribution


@pytest.mark.parametrize("root_name", ["submitted", "class"])
def test_nested_backup_copy_is_an_extra_file_of_its_student(tmp_path, root_name):
    root = tmp_path / root_name
    _nb(root / "alice" / "toy" / "toy.ipynb", mtime=1_000_000)
    _nb(root / "alice" / "toy" / "backup" / "toy.ipynb", mtime=2_000_000)  # newer, yet extra
    _nb(root / "alice" / "backup" / "toy" / "toy.ipynb", mtime=3_000_000)  # not a "backup" student
    _nb(root / "bob" / "toy" / "backup" / "toy.ipynb")  # bob's only copy: graded
    found = collect(root, assignments=TOY)
    assert _rows(found) == [
        ("alice", "toy", "alice/toy/toy.ipynb", None),
        ("bob", "toy", "bob/toy/backup/toy.ipynb", None),
    ]
    assert found[0].notes == (
        "3 notebooks for toy: graded alice/toy/toy.ipynb (the one at the expected place)",
        "extra file not graded: alice/backup/toy/toy.ipynb (an extra copy, not at the "
        "expected place)",
        "extra file not graded: alice/toy/backup/toy.ipynb (an extra copy, not at the "
        "expected place)",
    )
    assert found[1].notes == ()


def test_two_notebooks_in_one_assignment_folder_newest_is_graded(tmp_path):
    root = tmp_path / "submitted"
    _nb(root / "dan" / "toy" / "draft.ipynb", mtime=1_000_000)
    _nb(root / "dan" / "toy" / "final.ipynb", mtime=3_000_000)
    [found] = collect(root, assignments=TOY)
    assert (found.student, found.label) == ("dan", "dan/toy/final.ipynb")
    assert found.notes == (
        "2 notebooks for toy: graded dan/toy/final.ipynb (the newest)",
        "extra file not graded: dan/toy/draft.ipynb (an older copy)",
    )


def test_lms_folder_per_student_names_the_student(tmp_path):
    _nb(tmp_path / "Fay Li_2_assignsubmission_file_" / "toy.ipynb")
    _nb(tmp_path / "Gil_3_assignsubmission_file_" / "toy.ipynb")
    (tmp_path / "Erin_1_assignsubmission_file_").mkdir()
    found = collect(tmp_path, assignments=TOY)
    assert _rows(found) == [
        (
            "Erin_1_assignsubmission_file_",
            None,
            "Erin_1_assignsubmission_file_/",
            "no notebook in this student's folder (no file in it)",
        ),
        (
            f"Fay_Li_2_assignsubmission_file-{_h('Fay Li_2_assignsubmission_file_')}",
            "toy",
            "Fay Li_2_assignsubmission_file_/toy.ipynb",
            None,
        ),
        ("Gil_3_assignsubmission_file_", "toy", "Gil_3_assignsubmission_file_/toy.ipynb", None),
    ]


# ---------------------------------------------------------------------------- nothing dropped


def test_empty_folders_are_rows_not_silence(tmp_path):
    root = tmp_path / "submitted"
    _nb(root / "alice" / "toy" / "toy.ipynb")
    (root / "alice" / "toy2").mkdir()
    (root / "carol").mkdir()
    (root / "dave" / "toy").mkdir(parents=True)
    (root / "dave" / "toy" / "report.pdf").write_bytes(b"%PDF")
    found = collect(root, assignments=TOY)
    assert _rows(found) == [
        ("alice", "toy", "alice/toy/toy.ipynb", None),
        ("alice", "toy2", "alice/toy2/", "no notebook in this assignment's folder (no file in it)"),
        ("carol", None, "carol/", "no notebook in this student's folder (no file in it)"),
        ("dave", None, "dave/", "no notebook in this student's folder (it holds: toy/report.pdf)"),
    ]
    only_empty = tmp_path / "other" / "submitted"
    (only_empty / "erin").mkdir(parents=True)
    assert _rows(collect(only_empty, assignments=TOY)) == [
        ("erin", None, "erin/", "no notebook in this student's folder (no file in it)")
    ]


def test_a_gradable_copy_wins_over_a_rejected_one(tmp_path):
    root = tmp_path / "submitted"
    _nb(root / "ivy" / "toy" / "backup" / "toy.ipynb")
    os.symlink("/etc/passwd", root / "ivy" / "toy" / "toy.ipynb")
    [found] = collect(root, assignments=TOY)
    assert (found.label, found.problem) == ("ivy/toy/backup/toy.ipynb", None)
    assert found.notes == (
        "2 notebooks for toy: graded ivy/toy/backup/toy.ipynb (the only one that can be graded)",
        "extra file not graded: ivy/toy/toy.ipynb (a symbolic link, not a notebook file: not "
        "graded)",
    )


def test_links_and_special_files_are_rejected_one_by_one(tmp_path):
    root = tmp_path / "submitted"
    _nb(root / "alice" / "toy" / "toy.ipynb")
    secret = _nb(tmp_path / "secret.ipynb", '{"cells": [], "answers": "the key"}')
    (root / "gus" / "toy").mkdir(parents=True)
    os.symlink(secret, root / "gus" / "toy" / "toy.ipynb")
    (root / "hal" / "toy").mkdir(parents=True)
    os.mkfifo(root / "hal" / "toy" / "toy.ipynb")  # reading it would block forever
    found = collect(root, assignments=TOY)
    assert _rows(found) == [
        ("alice", "toy", "alice/toy/toy.ipynb", None),
        ("gus", "toy", "gus/toy/toy.ipynb", "a symbolic link, not a notebook file: not graded"),
        ("hal", "toy", "hal/toy/toy.ipynb", "not a regular file: not graded"),
    ]
    assert all(s.path.is_dir() for s in found[1:])  # nothing to read there


def test_a_problem_row_is_reported_invalid_without_reading(tmp_path):
    from autograder import grading

    entry = submissions.Submission(
        "carol",
        None,
        tmp_path,
        "carol/",
        "tree",
        "no notebook in this student's folder (no file in it)",
    )
    context = SimpleNamespace(template=SimpleNamespace(releases={}))
    record = grading.grade_one(entry, context)
    assert (record.student, record.status, record.reason, record.label) == (
        "carol",
        "invalid",
        "no notebook in this student's folder (no file in it)",
        "carol/",
    )


# ---------------------------------------------------------------------------- malformed files


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"cells": [', "not a notebook: invalid JSON at line 1 column 12"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"cells": [], "n": ' + b"7" * 5000 + b"}", "unreadable JSON"),
        (b'{"cells": [{"cell_type": "code", "source": [1, 2]}]}', "malformed content"),
        (b'{"worksheets": [], "nbformat": "three"}', "format version 'three' is not a number"),
        (b"\xff\xfe\x00{", "not UTF-8"),
    ],
)
def test_malformed_json_is_a_clear_invalid_status(data, reason):
    with pytest.raises(repair.Rejected) as caught:
        repair.load_submission(data)
    assert caught.value.status == "invalid"
    assert reason in caught.value.reason


def test_damaged_version_field_of_a_v4_layout_is_read_as_v4():
    notebook = repair.load_submission(b'{"cells": [], "nbformat": null}')
    assert notebook.nbformat == 4 and notebook.cells == []


# ---------------------------------------------------------------------------- zips


def _set_flag(data: bytes, name: bytes, flag: int, *, clear: bool = False) -> bytes:
    """The .zip ``data`` with general-purpose ``flag`` bits set (or cleared) on ``name``."""
    data = bytearray(data)
    for signature, offset, name_offset in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            if data[at + name_offset : at + name_offset + len(name)] == name:
                (bits,) = struct.unpack("<H", data[at + offset : at + offset + 2])
                bits = bits & ~flag if clear else bits | flag
                data[at + offset : at + offset + 2] = struct.pack("<H", bits)
            start = at + 4
    return bytes(data)


def _patch_sizes(data: bytes, name: bytes, size: int) -> bytes:
    """The .zip ``data`` with ``name``'s declared uncompressed size set to ``size``."""
    data = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(name)] == name:
                data[at + offset : at + offset + 4] = struct.pack("<I", size)
            start = at + 4
    return bytes(data)


def _zip(path: Path, members: dict[str, bytes], **write) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, content in members.items():
            bundle.writestr(name, content, **write)
    return path


def test_zip_bombs_and_lies_are_refused_member_by_member(tmp_path):
    archive = _zip(
        tmp_path / "class.zip",
        {
            "export/ann_toy.ipynb": NB.encode(),
            "export/bomb_toy.ipynb": b"\0" * (8 * 2**20),  # 8 MiB of zeros: ~1000:1
            "export/huge_toy.ipynb": NB.encode(),  # declares 3.75 GiB (patched below)
            "export/liar_toy.ipynb": b" " * (3 * 2**20),  # declares 1000 bytes (patched below)
            "export/zed_toy.ipynb": NB.encode(),
        },
    )
    data = _patch_sizes(archive.read_bytes(), b"export/huge_toy.ipynb", 0xF000_0000)
    archive.write_bytes(_patch_sizes(data, b"export/liar_toy.ipynb", 1000))
    unpacked = tmp_path / "unpacked"
    found = collect(archive, assignments=TOY, unpack_dir=unpacked)
    assert [(s.student, s.problem is None) for s in found] == [
        ("ann", True),
        ("bomb", False),
        ("huge", False),
        ("liar", False),
        ("zed", True),
    ]
    problems = {s.student: s.problem for s in found}
    assert problems["bomb"].startswith("compressed ") and "zip bomb" in problems["bomb"]
    assert problems["huge"] == ("too large: 3.8 GiB uncompressed (limit 64.0 MiB): not extracted")
    assert problems["liar"].startswith("a damaged member of the .zip (Bad CRC-32")
    assert found[0].path.read_text() == NB and found[-1].path.read_text() == NB
    extracted = sorted(p.name for p in unpacked.iterdir())
    assert extracted == sorted([found[0].path.name, found[-1].path.name])
    assert sum(p.stat().st_size for p in unpacked.iterdir()) == 2 * len(NB)


def test_zip_total_size_and_member_count_are_bounded(tmp_path):
    members = {f"s{i}_toy.ipynb": NB.encode() + b" " * 1000 for i in range(5)}
    archive = _zip(tmp_path / "class.zip", members)
    size = len(NB) + 1000
    found = collect(
        archive,
        assignments=TOY,
        unpack_dir=tmp_path / "u",
        zip_limits=ZipLimits(max_total_bytes=2 * size + 10),
    )
    assert [s.problem is None for s in found] == [True, True, False, False, False]
    assert found[2].problem == (
        "the .zip's total uncompressed size limit (0.0 MiB) is reached: not extracted"
    )
    found = collect(
        archive, assignments=TOY, unpack_dir=tmp_path / "u", zip_limits=ZipLimits(max_members=3)
    )
    assert [s.problem is None for s in found] == [True, True, True, False, False]
    assert found[3].problem.startswith("the .zip holds more than 3 members")
    assert len(list((tmp_path / "u").iterdir())) == 3  # a fresh folder each time


def test_zip_traversal_symlinks_and_encryption_are_refused(tmp_path):
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../../evil_toy.ipynb", NB)
        bundle.writestr("/abs_toy.ipynb", NB)
        bundle.writestr("C:/win_toy.ipynb", NB)
        link = zipfile.ZipInfo("lnk_toy.ipynb")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        bundle.writestr(link, "/etc/passwd")
        bundle.writestr("enc_toy.ipynb", NB)  # marked encrypted below (zipfile cannot)
        bundle.writestr("ok_toy.ipynb", NB)
        bundle.writestr("notes.txt", "not a notebook")
    archive.write_bytes(_set_flag(archive.read_bytes(), b"enc_toy.ipynb", 0x1))
    unpacked = tmp_path / "work" / "unpacked"
    found = collect(archive, assignments=TOY, unpack_dir=unpacked)
    by = {s.student: s for s in found}
    assert set(by) == {"evil", "abs", "win", "lnk", "enc", "ok"}
    unsafe = (
        "unsafe path in the .zip (it leads outside the folder it is extracted to): not extracted"
    )
    assert {name: by[name].problem for name in ("evil", "abs", "win")} == {
        "evil": unsafe,
        "abs": unsafe,
        "win": unsafe,
    }
    assert by["evil"].label == "../../evil_toy.ipynb"
    assert by["lnk"].problem == "a symbolic link in the .zip, not a notebook: not extracted"
    assert by["enc"].problem == "an encrypted member of the .zip: not extracted"
    assert by["ok"].problem is None and by["ok"].path.read_text() == NB
    assert [p.name for p in unpacked.iterdir()] == [by["ok"].path.name]
    assert {p.name for p in tmp_path.iterdir()} == {"class.zip", "work"}
    assert not Path("/abs_toy.ipynb").exists()


def test_zip_utf8_names_without_the_flag_and_duplicate_members(tmp_path):
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        info = zipfile.ZipInfo("Zo\u00eb_toy.ipynb")
        bundle.writestr(info, NB)
        bundle.writestr("dup_toy.ipynb", NB)
        with pytest.warns(UserWarning, match="Duplicate name"):
            bundle.writestr("dup_toy.ipynb", NB + " ")
    # what many tools write: UTF-8 bytes without the UTF-8 flag (zipfile then reads cp437)
    archive.write_bytes(_set_flag(archive.read_bytes(), "Zoë".encode(), 0x800, clear=True))
    with zipfile.ZipFile(archive) as bundle:
        assert bundle.namelist()[0] == "Zo├½_toy.ipynb"  # the flag is gone indeed
    found = collect(archive, assignments=TOY, unpack_dir=tmp_path / "u")
    assert [(s.student, s.label) for s in found] == [
        (f"Zoe-{_h('Zoë')}", "Zoë_toy.ipynb"),
        ("dup", "dup_toy.ipynb"),
    ]
    assert found[1].notes[0].startswith("2 notebooks for toy: graded dup_toy.ipynb (")
    assert found[1].notes[1].startswith("extra file not graded: dup_toy.ipynb [member 3] (")


# ---------------------------------------------------------------------------- reports


def _record(student, label, assignment="toy", status="ok", reasons=()):
    from autograder import results

    return results.Record(student, assignment, label, status, list(reasons), 1.0, 2.0)


def test_reports_are_short_safe_and_carry_the_source(tmp_path):
    from autograder import report

    long = "a" * 240
    records = [
        _record(f"caf-{_h(b'caf' + bytes([0xE9]))}", "caf\\xe9/toy/toy.ipynb"),
        _record(student_id(long), f"{long}_toy.ipynb"),
        _record("b" * 240, "raw\udcff/toy.ipynb", assignment=None),  # built by hand, unsafe
        _record("Alice", "Alice/toy/toy.ipynb"),
        _record("alice", "alice/toy/toy.ipynb"),  # clashes with Alice on macOS / Windows
        _record("eve", '=HYPERLINK("http://x")_toy.ipynb'),
        _record(
            "carol",
            "carol/",
            assignment=None,
            status="invalid",
            reasons=["no notebook in this student's folder (no file in it)"],
        ),
        _record("dan", "a/dan_toy.ipynb"),
        _record("dan", "b/dan_toy.ipynb"),  # same student and assignment: two pages
    ]
    out = tmp_path / "out"
    report.write_reports(records, out)
    written = [p for p in out.rglob("*") if p.is_file()]
    for path in written:
        for part in path.relative_to(out).parts:
            assert len(part.encode()) <= 80, part
    pages = {report.feedback_path(out, r, records) for r in records}
    assert len(pages) == len(records) and all(p.is_file() for p in pages)
    results = {report.results_path(out, r.student, records) for r in records}
    assert len(results) == 8 and all(p.is_file() for p in results)
    assert len({p.name.casefold() for p in results}) == 8
    with open(out / "grades.csv", newline="", encoding="utf-8") as stream:
        rows = {row["student"]: row for row in csv.DictReader(stream)}
    assert rows[f"caf-{_h(b'caf' + bytes([0xE9]))}"]["source"] == "caf\\xe9/toy/toy.ipynb"
    assert rows[student_id(long)]["source"] == f"{long}_toy.ipynb"
    assert rows["b" * 240]["source"] == "raw\\xff/toy.ipynb"
    assert rows["eve"]["source"] == '\'=HYPERLINK("http://x")_toy.ipynb'
    assert (rows["carol"]["status"], rows["carol"]["reason"], rows["carol"]["source"]) == (
        "invalid",
        "no notebook in this student's folder (no file in it)",
        "carol/",
    )
    page = report.feedback_path(out, records[2], records).read_text(encoding="utf-8")
    assert "raw\\xff/toy.ipynb" in page


def test_feedback_path_without_clashes_is_the_plain_one(tmp_path):
    from autograder import report

    record = _record("alice", "alice/toy/toy.ipynb")
    assert report.feedback_path(tmp_path, record) == tmp_path / "feedback" / "alice" / "toy.html"
    assert report.feedback_path(tmp_path, record, [record]) == report.feedback_path(
        tmp_path, record
    )
    assert report.results_path(tmp_path, "alice") == tmp_path / "results" / "alice.json"
    long = _record("x" * 300, "x.ipynb", assignment="y" * 300)
    path = report.feedback_path(tmp_path, long)
    assert [len(part) for part in path.relative_to(tmp_path).parts] == [8, 64, 69]


def test_grades_csv_source_column_round_trips(tmp_path):
    from autograder import report

    text = report.grades_csv([_record("zoe", 'Zoë, "quoted"/toy.ipynb')])
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["source"] == 'Zoë, "quoted"/toy.ipynb'
    assert list(row)[:7] == [
        "student",
        "assignment",
        "score",
        "max_score",
        "status",
        "reason",
        "source",
    ]
