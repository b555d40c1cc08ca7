#!/usr/bin/env python3
"""A journey service in Python, raced by racelab through `-s exec:` (README "Race your own service").

It is the seed's JourneyService: the journey is one JSON document in Redis, and an update reads
it, changes one segment's status, waits 10 ms, and writes it back. Started plain (or with
--naive), that is the seed's bug. With --fixed, the update is a WATCH/MULTI/EXEC transaction
that retries when another write came in between. With --locked, the seed's update runs under a
lock of this process (a .NET SemaphoreSlim fix): intact while one copy of the service runs, and
losing updates as soon as two do (racelab run --workers 2 starts one per worker).
--pause MS sets the pause between read and write (10, the seed's; longer to watch it in the TUI).

The adapter racelab talks to is the loop at the bottom: one JSON request per line on stdin, one
reply per line on stdout, matched by "id"; requests run concurrently (a thread each), so
replies may come back in any order, as racelab allows.
"""

import json
import os
import sys
import threading
import time

import redis

PREFIX = os.environ["RACELAB_KEY_PREFIX"]
PAUSE = 0.010
r = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
write_lock = threading.Lock()
process_lock = threading.Lock()


def key(journey_id):
    return f"{PREFIX}journey:{journey_id}"


class JourneyService:
    def __init__(self, mode):
        self.mode = mode

    def init(self, journey):
        r.set(key(journey["Id"]), json.dumps(journey))

    def get(self, journey_id):
        doc = r.get(key(journey_id))
        return None if doc is None else json.loads(doc)

    def update_segment_status(self, journey_id, segment_id, status):
        if self.mode == "--fixed":
            return self._update_watched(journey_id, segment_id, status)
        if self.mode == "--locked":
            with process_lock:  # one update at a time, in this process only
                return self._update_naive(journey_id, segment_id, status)
        return self._update_naive(journey_id, segment_id, status)

    def _update_naive(self, journey_id, segment_id, status):
        journey = self.get(journey_id)  # the seed's GetJourneyAsync
        if journey is None:
            return "journey not found"
        if not self._apply(journey, segment_id, status):
            return "segment not found"
        time.sleep(PAUSE)  # the seed's Task.Delay(10)
        r.set(key(journey_id), json.dumps(journey))  # the seed's SaveJourneyAsync
        return None

    def _update_watched(self, journey_id, segment_id, status):
        with r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key(journey_id))
                    doc = pipe.get(key(journey_id))
                    if doc is None:
                        return "journey not found"
                    journey = json.loads(doc)
                    if not self._apply(journey, segment_id, status):
                        return "segment not found"
                    time.sleep(PAUSE)
                    pipe.multi()
                    pipe.set(key(journey_id), json.dumps(journey))
                    pipe.execute()
                    return None
                except redis.WatchError:
                    continue  # someone wrote in between: read again

    @staticmethod
    def _apply(journey, segment_id, status):
        for segment in journey["Segments"]:
            if segment["SegmentId"] == segment_id:
                segment["Status"] = status
                segment["UpdateCount"] = segment.get("UpdateCount", 0) + 1
                return True
        return False


def reply(message):
    line = json.dumps(message)
    with write_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def handle(service, request):
    rid = request.get("id")
    try:
        op = request["op"]
        if op == "init":
            service.init(request["journey"])
            reply({"id": rid, "ok": True})
        elif op == "update":
            error = service.update_segment_status(
                request["journey_id"], request["segment_id"], request["status"]
            )
            reply({"id": rid, "ok": error is None, **({"error": error} if error else {})})
        elif op == "get":
            journey = service.get(request["journey_id"])
            if journey is None:
                reply({"id": rid, "ok": False, "error": "journey not found"})
            else:
                reply({"id": rid, "ok": True, "journey": journey})
        else:
            reply({"id": rid, "ok": False, "error": f"unknown op {op}"})
    except Exception as e:  # a reply for every request, whatever happens
        print(f"request {rid} failed: {e!r}", file=sys.stderr)
        reply({"id": rid, "ok": False, "error": repr(e)})


def main():
    global PAUSE
    args = sys.argv[1:]
    if "--pause" in args:
        PAUSE = int(args[args.index("--pause") + 1]) / 1000
    modes = [a for a in args if a in ("--naive", "--fixed", "--locked")]
    service = JourneyService(modes[0] if modes else "--naive")
    for line in sys.stdin:
        if line.strip():
            threading.Thread(target=handle, args=(service, json.loads(line))).start()


if __name__ == "__main__":
    main()
