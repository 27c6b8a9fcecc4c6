"""The log API's encodings: SSE frames of a batch, the Accept header."""

from jinad.api.logs import BatchFrames, _sse_frame, wants_event_stream
from jinad.logs import Batch


def test_any_run_of_a_batchs_lines_is_a_slice_of_its_frames_as_json_would_write_them():
    """Followers that joined or fell behind mid-batch get slices of the one encoding; a line's
    frame must end where the next one starts, also when its text is not ASCII."""
    for lines in (["plain", "two", 'quo"te\\'], ["añejo", "日本語 ✓", "\x00ctl", "last"]):
        batch = Batch(41, "2026-11-30T12:00:00.000Z", "stderr", lines, 0)
        frames = BatchFrames(batch)
        expected = [_sse_frame("log", {"seq": 41 + i, "ts": batch.ts, "stream": "stderr", "line": line}, 41 + i).encode()
                    for i, line in enumerate(lines)]
        for start in range(len(lines)):
            for stop in range(start + 1, len(lines) + 1):
                assert bytes(frames.lines(start, stop)) == b"".join(expected[start:stop]), (start, stop)
        assert len(frames) == sum(map(len, expected))


def test_an_event_stream_is_what_the_accept_header_takes_in_any_case_and_not_with_q_0():
    for accept in ("text/event-stream", "TEXT/Event-Stream", "text/plain;q=0.5, text/event-stream", " text/event-stream ;q=0.9"):
        assert wants_event_stream(accept), accept
    for accept in ("", "text/plain", "text/event-streamX", "text/event-stream;q=0, text/plain", "text/event-stream;q=x"):
        assert not wants_event_stream(accept), accept
