"""Deleting a job: its record, events, index entries and Idempotency-Key in one atomic step,
then its files (`<id>`, `<id>.partial`, `<id>.resume` under jobs_dir, and the store's
jobs/<id>/ objects when the store is a bucket).

A running job's files are left to the process running it: the delete sets its cancel flag, and
the worker removes what the job wrote once it has stopped (worker/tasks.py); should that worker
die, the retention sweep removes them (worker/retention.py). Until then the id waits in
ps:purge. A tombstone (ps:gone:<id>, kept PRUNESERVE_IDEMPOTENCY_TTL_S) lets a repeated delete
by the owner succeed again while everyone else still gets "not found".
"""

from __future__ import annotations

import logging
import re
import shutil

from service.artifact_store import StoreError, open_store
from service.jobs import FINISHED, UNQUEUED, JobStore
from service.schemas import JobState, partial_dir, resume_dir

log = logging.getLogger(__name__)
PURGE = "ps:purge"  # set: deleted jobs whose files may still exist
JOB_ID = re.compile(r"[0-9a-f]{32}")

# KEYS: record, events, tenant's list, unqueued, finished, tombstone, purge, cancel flag, then
# the state sets. ARGV: id, tenant, tombstone ttl, cancel-flag ttl.
# Returns the state the job was in, "gone" for a job this tenant already deleted, or nil.
_DELETE = """
local raw = redis.call('GET', KEYS[1])
if not raw then
  if redis.call('GET', KEYS[6]) == ARGV[2] then return 'gone' end
  return false
end
local rec = cjson.decode(raw)
if rec.tenant ~= ARGV[2] then return false end
if type(rec.idem_key) == 'string' and redis.call('GET', rec.idem_key) == ARGV[1] then
  redis.call('DEL', rec.idem_key)
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
for i = 9, #KEYS do redis.call('SREM', KEYS[i], ARGV[1]) end
redis.call('SET', KEYS[6], ARGV[2], 'EX', tonumber(ARGV[3]))
redis.call('SADD', KEYS[7], ARGV[1])
if rec.state == 'running' then
  redis.call('SET', KEYS[8], '1', 'EX', tonumber(ARGV[4]))
end
return rec.state
"""


def delete(store: JobStore, tenant: str, job_id: str) -> bool:
    """Delete `tenant`'s job `job_id` (a running one is cancelled first); False when the tenant
    has no such job, now or recently deleted."""
    s = store.settings
    keys = [
        f"ps:job:{job_id}",
        f"ps:events:{job_id}",
        f"ps:tenant:{tenant}:jobs",
        UNQUEUED,
        FINISHED,
        f"ps:gone:{job_id}",
        PURGE,
        f"ps:cancel:{job_id}",
    ]
    keys += [f"ps:state:{state.value}" for state in JobState]
    args = [job_id, tenant, s.IDEMPOTENCY_TTL_S, s.VISIBILITY_TIMEOUT_S]
    was = store.r.register_script(_DELETE)(keys=keys, args=args)
    if was is None:
        return False
    if was.decode() != JobState.running.value or not store.job_owner_alive(job_id):
        remove_files(store, job_id)
    return True


def remove_files(store: JobStore, job_id: str) -> None:
    """Remove a deleted job's files, and what Redis still holds for it (events written by its
    worker after the delete, the cancel flag); the id leaves ps:purge. Only a well-formed id
    names a path: any other has no files."""
    if JOB_ID.fullmatch(job_id):
        out = store.settings.jobs_dir / job_id
        for path in (out, partial_dir(out), resume_dir(out)):
            shutil.rmtree(path, ignore_errors=True)
        objects = open_store(store.settings)
        if objects.remote:
            try:
                objects.delete_prefix(f"jobs/{job_id}/")
            except StoreError as exc:  # stays in ps:purge: the retention sweep retries
                log.warning("job %s: %s", job_id, exc)
                return
    store.r.delete(f"ps:events:{job_id}", f"ps:cancel:{job_id}")
    store.r.srem(PURGE, job_id)


def pending_purges(store: JobStore) -> list[str]:
    """Deleted jobs whose files may still exist (their worker was running them)."""
    return [m.decode() for m in store.r.smembers(PURGE)]
