"""The sandbox's attach stream is read through a descriptor of our own, not docker-py's socket,
which its HTTP response and connection pool close whenever they are collected or recycled."""

from __future__ import annotations

import socket

from executor.sandbox.connection import _own_socket


def test_the_stream_survives_docker_py_closing_its_socket() -> None:
    ours, peer = socket.socketpair()
    attached = socket.SocketIO(ours, "rwb")  # what docker-py's attach_socket returns on a unix socket
    own = _own_socket(attached)
    try:
        assert ours.fileno() == -1 and attached.closed  # docker-py's objects are closed at once
        peer.sendall(b"frame")
        assert own.recv(16) == b"frame"
        own.sendall(b"reply")
        assert peer.recv(16) == b"reply"
    finally:
        own.close()
    assert peer.recv(16) == b""  # closing ours ends the stream: no other descriptor keeps it open
    peer.close()
