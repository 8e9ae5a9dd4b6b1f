"""The Notifier refuses to start on a bad configuration, naming the key; without URLs it idles."""

from __future__ import annotations

import pytest

from tai_autonomics.runtime import Node, StartError, parse_tree


def start(node: Node, notifications: dict | None, **args) -> None:
    node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"intensity": 1, "children": ["Notifier"]}},
                                "workers": {"Notifier": {"actor": "tai_autonomics.actors.notifier:Notifier",
                                                         "args": {"context": {"notifications": notifications},
                                                                  **args}}}}))


@pytest.mark.parametrize(("notifications", "args", "key"), [
    ({"urls": ["http://127.0.0.1:9/hook"]}, {}, "notifications.secret_env"),
    ({"urls": ["http://127.0.0.1:9/hook"], "secret_env": "TAI_TEST_UNSET_SECRET"}, {}, "notifications.secret_env"),
    ({"urls": "http://127.0.0.1:9/hook", "secret_env": "HOME"}, {}, "notifications.urls"),
    ({"urls": ["ftp://example/hook"], "secret_env": "HOME"}, {}, "notifications.urls"),
    ({"urls": ["http://127.0.0.1:9/hook"], "secret_env": "HOME"}, {"attempts": 0}, "attempts"),
    ({"urls": ["http://127.0.0.1:9/hook"], "secret_env": "HOME"}, {"window_s": "1h"}, "window_s"),
    ({"urls": ["http://127.0.0.1:9/hook"], "secret_env": "HOME"}, {"timeout_s": True}, "timeout_s"),
    ({"urls": ["http://127.0.0.1:9/hook"], "secret_env": "HOME"}, {"timeout_s": float("inf")}, "timeout_s"),
    ({"urls": ["http://127.0.0.1:9/hook"], "secret_env": "HOME"}, {"attempts": 2.5}, "attempts"),
])
def test_a_bad_configuration_fails_the_start_naming_the_key(node: Node, notifications, args, key: str) -> None:
    with pytest.raises(StartError) as err:
        start(node, notifications, **args)
    assert key in err.value.message


def test_without_urls_it_idles(node: Node) -> None:
    start(node, None)
    try:
        assert node.call("Notifier", "status") == {"enabled": False, "urls": [], "chain": None, "cursor": 0,
                                                   "pending": 0, "sent": 0, "failed": 0, "suppressed": 0}
    finally:
        node.stop_tree()
