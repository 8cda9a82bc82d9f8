"""The operator's log lines: chatproto's events cheaply, anything else as Twisted would."""

import io
import time

from twisted.internet import task
from twisted.logger import Logger, LogPublisher, formatEventAsClassicLogText
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatproto.server.operatorlog import LogLines, server_log_observers


class RunningClock(task.Clock):
    running = True


def logger_into(observers, namespace="chatproto.core.realm"):
    publisher = LogPublisher(*observers)
    return Logger(namespace=namespace, observer=publisher)


class LogLinesTests(SynchronousTestCase):
    def setUp(self):
        self.out, self.err = io.StringIO(), io.StringIO()
        self.clock = RunningClock()
        self.observers = server_log_observers(self.out, self.err, self.clock)

    def test_line_as_twisteds_text_observer_writes_it(self):
        events = []
        log = logger_into([*self.observers, events.append])
        log.info("{username} logged in from {ip} ({frontend})", username="Yoda", ip="127.0.0.1",
                 frontend="line")
        self.clock.advance(0)
        self.assertEqual(self.out.getvalue(), formatEventAsClassicLogText(events[0]))
        self.assertIn("[chatproto.core.realm#info] Yoda logged in from 127.0.0.1 (line)\n",
                      self.out.getvalue())
        self.assertEqual(self.err.getvalue(), "")

    def test_repr_conversion_and_second_line_indented(self):
        log = logger_into(self.observers)
        log.info("Failed login: no account {username!r}\nsecond", username="x'y")
        self.clock.advance(0)
        self.assertTrue(self.out.getvalue().endswith(
            "Failed login: no account \"x'y\"\n\tsecond\n"), self.out.getvalue())

    def test_a_turns_lines_written_and_flushed_together_at_its_end(self):
        writes, flushes = [], []
        self.out.write = writes.append
        self.out.flush = lambda: flushes.append(len(writes))
        log = logger_into(self.observers)
        log.info("one")
        log.info("two")
        self.assertEqual((writes, flushes), ([], []))
        self.clock.advance(0)
        self.assertEqual(len(writes), 1)
        lines = writes[0].splitlines()
        self.assertEqual([line.split("] ", 1)[1] for line in lines], ["one", "two"])
        self.assertEqual(flushes, [1])

    def test_without_a_running_reactor_each_line_at_once(self):
        out = io.StringIO()
        log = logger_into(server_log_observers(out, io.StringIO(), task.Clock()))
        log.info("starting")
        self.assertTrue(out.getvalue().endswith("] starting\n"))

    def test_problems_on_err_with_their_traceback_at_once(self):
        log = logger_into(self.observers)
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            log.failure("Cannot write the database", Failure())
        self.assertIn("[chatproto.core.realm#critical] Cannot write the database", self.err.getvalue())
        self.assertIn("ZeroDivisionError", self.err.getvalue())
        self.assertEqual(self.out.getvalue(), "")

    def test_other_libraries_informational_chatter_left_out(self):
        logger_into(self.observers, namespace="twisted.internet.base").info("Main loop terminated.")
        logger_into(self.observers, namespace="twisted.web").warn("bad {thing()}", thing=lambda: "x")
        self.clock.advance(0)
        self.assertEqual(self.out.getvalue(), "")
        self.assertIn("[twisted.web#warn] bad x", self.err.getvalue())

    def test_unformattable_event_does_not_raise(self):
        lines = LogLines(io.StringIO())
        text = lines.format({"log_format": "{missing}", "log_time": time.time(),
                             "log_namespace": "chatproto.x", "log_level": None})
        self.assertIn("Unable to format event", text)
