import asyncio
import errno
import os

from jinad import logs
from jinad.logs import Log, Piece, follow
from jinad.supervision import _PipeToLog


def make_log(tmp_path, ring_lines=5, file_max_bytes=10_000_000, backups=3) -> Log:
    return Log(tmp_path / "x.log", ring_lines, 1 << 20, file_max_bytes, backups)


async def collect(log: Log, after: int) -> list:
    out = []
    async for lot in follow(log, after, keep_following=False, finished=lambda: True):
        out += [entry for item in lot if isinstance(item, Piece) for entry in item.entries()]
    return out


async def test_lines_past_the_ring_come_from_the_file(tmp_path):
    log = make_log(tmp_path, ring_lines=5)
    for i in range(20):
        log.append("stdout", [f"line {i}"])
    log.flush()
    assert [e.line for e in log.tail(3)] == ["line 17", "line 18", "line 19"]
    lines = await collect(log, 2)
    assert [e.seq for e in lines] == list(range(3, 21))
    assert lines[0].line == "line 2"


async def test_sequence_numbers_carry_on_after_reopening_and_rotation(tmp_path):
    log = make_log(tmp_path, file_max_bytes=500)
    for i in range(50):
        log.append("stderr", [f"line {i:03d} " + "y" * 20])
        log.flush()
    log.close()
    assert len(log.files()) == 4  # the current file and three backups
    again = make_log(tmp_path, file_max_bytes=500)
    assert again.last_seq == 50
    again.append("stdout", ["after"])
    entries = await collect(again, 0)
    assert entries[-1].seq == 51 and entries[-1].line == "after"
    seqs = [e.seq for e in entries]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


async def test_pipe_reader_splits_long_lines_and_replaces_bad_utf8(tmp_path):
    log = make_log(tmp_path, ring_lines=100)
    pipe = _PipeToLog("stdout", log, max_line=20)
    pipe.data_received(b"ok\r\n" + b"a" * 45 + b"\n\xff\xfebad\n\x1b[31mred\x1b[0m\nno newline")
    pipe.data_received(b" at the end")
    pipe.eof_received()
    lines = [e.line for e in log.tail(100)]
    assert lines[:4] == ["ok", "a" * 20, "a" * 20, "a" * 5]
    assert lines[4] == "\ufffd\ufffdbad"
    assert lines[5] == "red"
    assert lines[6:] == ["no newline at the en", "d"]


async def test_a_follower_far_behind_reads_every_line_once_from_rotated_files(tmp_path):
    log = make_log(tmp_path, ring_lines=100, file_max_bytes=300_000, backups=20)
    for i in range(600):  # batches of 1 to 99 lines, as pipe reads come
        log.append("stdout" if i % 3 else "stderr", [f"b{i} l{j} " + "x" * (j % 50) for j in range(i % 99 + 1)])
        log.flush()
    assert len(log.files()) > 5
    expected = [f"b{i} l{j} " + "x" * (j % 50) for i in range(600) for j in range(i % 99 + 1)]
    for start in (0, 1, 12_345, len(expected) - 150):
        lines = await collect(log, start)
        assert [e.seq for e in lines] == list(range(start + 1, len(expected) + 1))
        assert [e.line for e in lines] == expected[start:]


async def test_a_state_change_keeps_its_place_among_lines_read_back_from_the_file(tmp_path):
    log = make_log(tmp_path, ring_lines=1)
    log.append("stdout", ["a1", "a2"])
    log.note_state("ready", None)
    log.append("stdout", ["b1", "b2"])  # same millisecond and stream: one run in the file
    log.append("stdout", ["c1"])
    log.flush()
    order = []
    async for lot in follow(log, 0, keep_following=False, finished=lambda: True):
        for item in lot:
            order += item.lines if isinstance(item, Piece) else [item.state]
    assert order == ["a1", "a2", "ready", "b1", "b2", "c1"]


async def test_followers_of_a_fast_log_are_woken_once_per_lot(tmp_path):
    log = make_log(tmp_path, ring_lines=100_000)
    wakes = []

    async def follower():
        async for lot in follow(log, 0, keep_following=True, finished=lambda: log.last_seq >= 1000):
            wakes.append(sum(len(item.lines) for item in lot))

    task = asyncio.create_task(follower())
    for i in range(1000):
        log.append("stdout", [f"line {i}"])
        log.flush()
        if i % 100 == 0:
            await asyncio.sleep(0)  # the follower runs between some appends
    await asyncio.wait_for(task, 5)
    assert sum(wakes) == 1000 and len(wakes) < 50


async def test_lines_lost_to_a_full_disk_leave_a_gap_not_a_stuck_follower(tmp_path):
    # Lines 4-6 never reached the file (dropped while the disk was full).
    (tmp_path / "x.log").write_text("".join(f"{n} 2026-11-28T00:00:00.000Z stdout line {n}\n" for n in (1, 2, 3, 7, 8)))
    log = make_log(tmp_path)
    assert log.last_seq == 8
    assert [e.seq for e in await collect(log, 3)] == [7, 8]
    assert [e.seq for e in await collect(log, 5)] == [7, 8]


async def test_reading_back_by_blocks_gives_each_line_once_across_block_edges(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "REREAD_BYTES", 700)  # many blocks, lines longer than a block
    log = make_log(tmp_path, ring_lines=1, file_max_bytes=50_000, backups=50)
    expected = []
    for i in range(300):
        batch = [f"{i}-{j}" + "z" * ((i * 37 + j * 101) % 1500) for j in range(i % 4 + 1)]
        expected += batch
        log.append("stdout", batch)
        log.flush()
    for start in (0, 1, 2, 99, 350, len(expected) - 3):
        lines = await collect(log, start)
        assert [e.line for e in lines] == expected[start:]


async def test_a_reader_right_after_a_rotation_gets_the_lines_of_the_rotated_file(tmp_path):
    log = make_log(tmp_path, ring_lines=10, file_max_bytes=2_000, backups=5)
    for i in range(123):
        log.append("stdout", [f"line {i:03d} " + "q" * 20])
    log.flush()  # one write past the limit: rotated, and <id>.log is empty until the next line
    assert log.path.stat().st_size == 0
    for start in (60, 75, 90, 118):
        assert [e.seq for e in await collect(log, start)] == list(range(start + 1, 124))


async def test_blocks_read_back_are_forgotten_when_no_follower_uses_them(tmp_path, monkeypatch):
    log = make_log(tmp_path, ring_lines=1)
    for i in range(50):
        log.append("stdout", [f"line {i}"])
        log.flush()
    assert len(await collect(log, 0)) == 50
    assert log._reread
    log.tend()
    assert log._reread  # just used
    monkeypatch.setattr(logs, "REREAD_IDLE_S", 0.0)
    log.tend()
    assert not log._reread


async def test_a_log_that_could_not_open_its_new_file_writes_again_once_it_can(tmp_path, monkeypatch):
    log = make_log(tmp_path, ring_lines=100, file_max_bytes=300, backups=3)
    real_open = os.open
    failing = {"on": True}

    def open_or_fail(path, *args, **kwargs):
        if failing["on"] and str(path) == str(log.path):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_or_fail)
    for i in range(10):  # the first flush past 300 bytes rotates, and <id>.log cannot be made
        log.append("stdout", [f"line {i} " + "w" * 40])
        log.flush()
    failing["on"] = False
    for i in range(10, 20):
        log.append("stdout", [f"line {i} " + "w" * 40])
        log.flush()
    log.close()
    again = make_log(tmp_path, ring_lines=100, file_max_bytes=300, backups=3)
    assert again.last_seq == 20  # every line reached a file: numbers are not used twice
    assert [e.line.split()[1] for e in await collect(again, 0)][-10:] == [str(i) for i in range(10, 20)]


def stamp(i: int) -> str:
    return f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}.000Z"


async def test_a_time_is_found_by_bisection_in_the_ring_and_in_rotated_files(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "REREAD_BYTES", 256)  # bisect within files, not only scan
    log = make_log(tmp_path, ring_lines=5, file_max_bytes=4000, backups=3)
    for i in range(240):  # line i: seq i + 1, written at second i
        monkeypatch.setattr(logs, "utc_now", lambda i=i: stamp(i))
        log.append("stdout", [f"line {i:03d} " + "x" * 30])
        log.flush()
    assert len(log.files()) == 4
    kept_from = int(log.files()[0].read_text().split(" ", 1)[0]) - 1  # older lines were rotated away
    for i in (kept_from + 1, kept_from + 2, 150, 200, 234, 236, 239):
        assert log.seq_before(stamp(i)) == i, i
    # Before what is kept: from the start of it; after the last line: nothing yet.
    assert log.seq_before(stamp(kept_from)) == 0 and log.seq_before("2027-01-01T00:00:00.000Z") == 240

    window = []
    async for lot in follow(log, log.seq_before(stamp(100)), False, lambda: True, since=stamp(100), until=stamp(102)):
        window += [entry.line[:8] for item in lot if isinstance(item, Piece) for entry in item.entries()]
    assert window == ["line 100", "line 101", "line 102"]
    assert log.followers == 0


async def test_a_line_torn_by_a_killed_daemon_is_cut_off_and_numbers_go_on(tmp_path):
    path = tmp_path / "t.log"
    path.write_bytes(b"1 2026-11-30T00:00:00.000Z stdout one\n2 2026-11-30T00:00:00.000Z stdout tw")
    log = Log(path, 100, 1 << 20, 1 << 20, 1)
    assert log.last_seq == 1 and log.last_line_of("stdout") == 1
    log.close()
    assert path.read_bytes() == b"1 2026-11-30T00:00:00.000Z stdout one\n"


async def test_followers_at_the_same_place_are_handed_the_same_lot_until_the_log_moves_on(tmp_path):
    log = make_log(tmp_path, ring_lines=100)
    log.append("stdout", ["a", "b"])
    log.note_state("ready", None)
    first = log.lot_after(0, 0)
    assert log.lot_after(0, 0) is first  # built once for every follower there
    assert [item.lines if isinstance(item, Piece) else item.state for item in first.items] == [["a", "b"], "ready"]
    assert (first.after, first.notes_seen) == (2, 1)
    assert log.lot_after(2, 1) is None
    log.append("stdout", ["c"])
    again = log.lot_after(0, 0)  # a follower there now would be given more: not the kept lot
    assert again is not first and [i.lines for i in again.items if isinstance(i, Piece)] == [["a", "b"], ["c"]]
    assert [i.lines for i in log.lot_after(2, 1).items] == [["c"]]


async def test_many_followers_of_a_live_log_get_every_line_once_in_order(tmp_path):
    log = make_log(tmp_path, ring_lines=100_000)
    got: list[list[str]] = [[] for _ in range(20)]

    async def follower(out: list[str]):
        async for lot in follow(log, 0, keep_following=True, finished=lambda: log.last_seq >= 3000):
            out += [line for item in lot if isinstance(item, Piece) for line in item.lines]

    tasks = [asyncio.create_task(follower(out)) for out in got]
    for i in range(300):
        log.append("stdout", [f"{i}.{j}" for j in range(10)])
        log.flush()
        if i % 7 == 0:
            await asyncio.sleep(0.001)  # followers wake at different points of the stream
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    expected = [f"{i}.{j}" for i in range(300) for j in range(10)]
    assert all(out == expected for out in got)


async def test_parked_followers_get_lots_written_for_them_and_their_task_only_when_their_socket_is_full(tmp_path):
    log = make_log(tmp_path, ring_lines=100_000)
    got: list[list[str]] = [[] for _ in range(10)]
    through_task = [0] * 10

    def lines_of(items) -> list[str]:
        return [line for item in items if isinstance(item, Piece) for line in item.lines]

    def deliverer(n: int):
        def deliver(lot) -> bool:
            if n % 3 == 0 and len(got[n]) % 7 == 0:  # now and then its socket is full
                return False
            got[n].extend(lines_of(lot.items))
            return True
        return deliver

    async def follower(n: int):
        async for items in follow(log, 0, keep_following=True, finished=lambda: log.last_seq >= 3000,
                                  deliver=deliverer(n)):
            through_task[n] += 1
            got[n].extend(lines_of(items))

    tasks = [asyncio.create_task(follower(n)) for n in range(10)]
    await asyncio.sleep(0)
    assert len(log.parked) == 10
    for i in range(300):
        log.append("stdout", [f"{i}.{j}" for j in range(10)])
        log.flush()
        await asyncio.sleep(0.0005 if i % 5 else 0.003)  # some wake-ups find every follower parked
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    expected = [f"{i}.{j}" for i in range(300) for j in range(10)]
    assert all(out == expected for out in got)
    assert not log.parked and log.followers == 0
    assert sum(through_task[n] for n in range(10) if n % 3) < sum(through_task[n] for n in range(10) if n % 3 == 0)


async def test_a_parked_follower_whose_client_goes_away_is_unparked(tmp_path):
    log = make_log(tmp_path)
    agen = follow(log, 0, keep_following=True, finished=lambda: False, deliver=lambda lot: True)
    task = asyncio.create_task(agen.__anext__())
    await asyncio.sleep(0)
    assert len(log.parked) == 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await agen.aclose()
    assert not log.parked and log.followers == 0


async def test_a_parts_lines_are_copied_into_its_flows_log_marked(tmp_path):
    flow_log, part_log = Log(tmp_path / "flow.log", 100, 1 << 20, 1 << 20, 1), Log(tmp_path / "part.log", 100, 1 << 20, 1 << 20, 1)
    part_log.copy_to = (flow_log, "[upper/1] ")
    part_log.append("stderr", ["boom", "again"])
    part_log.flush()
    assert [(e.stream, e.line) for e in part_log.tail(5)] == [("stderr", "boom"), ("stderr", "again")]
    assert [(e.stream, e.line) for e in flow_log.tail(5)] == [("stderr", "[upper/1] boom"), ("stderr", "[upper/1] again")]
    assert "[upper/1] again" in (tmp_path / "flow.log").read_text()  # flushed to the Flow's file too
