"""The example eater from netdumplings 0.5.1's README and docs ("Example dumpling eater",
"Writing a dumpling eater"), unchanged. tests/compat/test_compat05_live.py runs it against a
real hub: ``python printer_eater05.py`` as documented (argv, added below the example, only
says which hub and how many dumplings, so that the test can use a free port and end)."""

import json
import netdumplings

class PrinterEater(netdumplings.DumplingEater):
    async def on_connect(self, hub_uri, websocket):
        print(f'Connected to nd-hub at {hub_uri}')
        print('Waiting for dumplings...\n')

    async def on_dumpling(self, dumpling):
        # The given dumpling is a netdumplings.Dumpling instance.
        dumpling_printable = json.dumps(dumpling.payload, indent=4)
        print(f'{dumpling_printable}\n')


def dumpling_printer():
    eater = PrinterEater()
    eater.run()


if __name__ == '__main__':
    import sys

    if len(sys.argv) == 1:
        dumpling_printer()
    else:  # the test's hub and count: PrinterEater itself is as documented
        PrinterEater(hub=sys.argv[1]).run(dumpling_count=int(sys.argv[2]))
