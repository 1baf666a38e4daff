"""A real Modbus TCP server (pymodbus) playing the PLC in the station's integration tests.

It listens on 127.0.0.1, on the port given as first argument or else on port 0 (a free port: a restarted PLC
reuses the port it had), prints `PORT <n>` on stdout once it is listening, then prints one
JSON line per write request it serves: {"fc": function code, "address": first address, "values": [...]}.
Reads are answered from the stored values and not logged. It stops when stdin closes (the test ended).
Coils, discrete inputs, holding and input registers are distinct blocks of 256 entries at addresses 0..255.
"""

import asyncio
import json
import sys

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

WRITE_CODES = {5, 6, 15, 16}


async def log_writes(function_code, _start, address, _count, _registers, set_values):
    if function_code in WRITE_CODES and set_values is not None:
        values = [int(v) for v in set_values]
        print(json.dumps({"fc": function_code, "address": address, "values": values}), flush=True)
    return None


async def main():
    bits = lambda: [SimData(0, count=256, values=False, datatype=DataType.BITS)]
    regs = lambda: [SimData(0, count=256, values=0, datatype=DataType.REGISTERS)]
    device = SimDevice(0, simdata=(bits(), bits(), regs(), regs()), action=log_writes)
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
