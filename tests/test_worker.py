"""One thread for a series of jobs (nbhooks.worker)."""

from __future__ import annotations

import logging
import threading

import pytest
from waiting import wait_for

from nbhooks.worker import Worker


def test_jobs_run_one_at_a_time_on_one_thread_set_up_once():
    setups: list[threading.Thread] = []
    ran: list[tuple[int, threading.Thread]] = []
    worker = Worker("nbhooks-test-worker", setup=lambda: setups.append(threading.current_thread()))
    for i in range(3):
        worker.submit(lambda i=i: ran.append((i, threading.current_thread())))
        worker.wait()
    worker.close()
    assert [i for i, _ in ran] == [0, 1, 2] and len({t for _, t in ran}) == 1
    assert setups == [ran[0][1]] and ran[0][1].name == "nbhooks-test-worker"
    assert not ran[0][1].is_alive()  # close() joined it


def test_a_second_job_while_one_runs_is_refused_and_close_lets_it_finish():
    release, done = threading.Event(), []
    worker = Worker("nbhooks-test-worker")
    worker.submit(lambda: (release.wait(10), done.append(1)))
    assert worker.busy
    with pytest.raises(RuntimeError, match="still runs its last job"):
        worker.submit(lambda: None)
    closing = threading.Thread(target=worker.close)
    closing.start()
    release.set()
    closing.join(10)
    assert done == [1] and not worker.busy and not closing.is_alive()
    with pytest.raises(RuntimeError, match="is closed"):
        worker.submit(lambda: None)


def test_a_job_that_raises_is_logged_and_the_worker_serves_on(caplog):
    worker, ran = Worker("nbhooks-test-worker"), []
    with caplog.at_level(logging.ERROR, logger="nbhooks.worker"):
        worker.submit(lambda: 1 / 0)
        worker.wait()
    worker.submit(lambda: ran.append(1))
    worker.wait()
    worker.close()
    assert ran == [1] and "ZeroDivisionError" in caplog.text


def test_the_thread_ends_once_its_owner_is_gone_and_a_new_job_starts_another():
    owner_alive = threading.Event()
    owner_alive.set()
    threads: list[threading.Thread] = []
    worker = Worker("nbhooks-test-worker", alive=owner_alive.is_set, poll=0.01)
    worker.submit(lambda: threads.append(threading.current_thread()))
    worker.wait()
    owner_alive.clear()
    assert wait_for(lambda: not threads[0].is_alive(), timeout=10)
    owner_alive.set()
    worker.submit(lambda: threads.append(threading.current_thread()))
    worker.wait()
    worker.close()
    assert len(threads) == 2 and threads[1] is not threads[0]
