"""A TCP proxy on 127.0.0.1 whose link can be cut, for tests of a database that goes away.

    python3 tcp_proxy.py TARGET_PORT

Prints "listening on PORT" once it accepts, then reads commands on stdin, one a line: "cut"
closes every open connection and closes new ones as soon as they are accepted, as when the
server is gone; "restore" lets connections through again. It exits when stdin closes.
"""
import asyncio
import sys


async def main(target_port):
    cut = False
    open_writers = set()

    async def pipe(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(client_reader, client_writer):
        if cut:
            client_writer.close()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        open_writers.update((client_writer, server_writer))
        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
        open_writers.difference_update((client_writer, server_writer))

    def cut_link():
        nonlocal cut
        cut = True
        for writer in list(open_writers):
            writer.transport.abort()
        open_writers.clear()

    def restore_link():
        nonlocal cut
        cut = False

    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        if line.strip() == "cut":
            cut_link()
        elif line.strip() == "restore":
            restore_link()
        print(f"{line.strip()}: done", flush=True)
    server.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
