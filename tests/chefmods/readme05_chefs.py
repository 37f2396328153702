"""The example chef from netdumplings 0.5.1's README ("Example dumpling chef"), as
documented there, with the one change docs/migration.md shows: scapy 2.6 made ``DNS.qd``
a list of questions, so the first one is ``fields['qd'][0]``. Run by
tests/compat/test_compat05_live.py in a real kitchen against a real hub."""

import time
import netdumplings

class DNSLookupChef(netdumplings.DumplingChef):
    def packet_handler(self, packet):
        # The incoming packet is a scapy packet object.
        # https://scapy.readthedocs.io

        # Ignore packets that we don't care about.
        if not packet.haslayer('DNS'):
            return

        # Determine the name of the host that was looked up.
        dns_query = packet.getlayer('DNS')
        query = dns_query.fields['qd'][0]  # 0.5's README: dns_query.fields['qd']
        hostname = query.qname.decode('utf-8')

        # Generate a dumpling payload from the DNS lookup.
        dumpling_payload = {
            'lookup': {
                'hostname': hostname,
                'when': time.time(),
            }
        }

        # The handler is returning a dict, which will be automatically
        # converted into a dumpling and sent to nd-hub, which will then
        # forward it on to all the eaters.
        return dumpling_payload
