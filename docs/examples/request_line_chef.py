"""A stream chef: the request line of every HTTP/1 request, from reassembled TCP bytes."""

from netdumplings import Direction, StreamChef


class RequestLineChef(StreamChef):
    default_ports = (80,)  # or: --chef-option RequestLineChef.ports=80,8080

    def detect(self, flow, direction, data):
        # Flows on other ports are followed when their first bytes look like a request.
        return direction is Direction.CLIENT_TO_SERVER and data.startswith((b"GET ", b"POST "))

    def new_flow_state(self, flow):
        return bytearray()  # lives on the flow, freed with it

    def on_data(self, flow, direction, data, timestamp):
        if direction is not Direction.CLIENT_TO_SERVER:
            return  # responses have bodies in the way: Http1Chef parses those properly
        buffer = self.flow_state(flow)
        buffer += data  # a segment can end anywhere, even inside a line
        *lines, rest = bytes(buffer).split(b"\r\n")
        buffer[:] = rest[-8192:]  # never hold more than a line's worth
        for line in lines:
            if line.startswith((b"GET ", b"POST ")):
                yield {"src": flow.src(direction), "line": line.decode("latin-1")}

    def on_close(self, flow, reason):
        return {"src": flow.client_str, "closed": str(reason), "packets": sum(flow.packets)}


if __name__ == "__main__":  # python request_line_chef.py: try it on a capture
    from netdumplings.kitchen.offline import read_dumplings

    for dumpling in read_dumplings("tests/data/http1-keepalive.pcap", [RequestLineChef]):
        print(dumpling["payload"])
