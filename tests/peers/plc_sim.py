"""A PLC simulator (pymodbus) that plays the PLC's side of the station's handshake (docs/PLC.md) in every role.

Usage: plc_sim.py '<json scenario>'. Roles:
  "server": the PLC is a Modbus TCP server on 127.0.0.1 (the station is its client); prints `READY <port>`.
  "rtu":    the PLC is a Modbus RTU server on one end of a socat pseudo-terminal pair; prints `READY <device>`,
            the station's end of the pair.
  "client": the PLC is a Modbus TCP client polling the station at scenario["connect"]; prints `READY -`.

Its program, every scan: counts up its heartbeat (unless told to stop), advances an encoder, raises triggers
with part IDs (`parts` of them, every `period_ms`; the trigger bit drops at TRIGGER_ACK or after `hold_ms`, or
is held `hold_first_ms` for the first part; the next one rises only after TRIGGER_ACK fell), acknowledges results (unless `ack` is false), and records what it
saw: each result (once per RESULT_READY phase, or each new one without acknowledge), reject coil edges, and the
status bits, depth and faults. Faults on demand: `cut_at_s`/`cut_for_s` drops the link (server: closes the
server and its connections; client: disconnects), `heartbeat_stop_s` stops the heartbeat, `reset_at_s` pulses
fault reset; `recipe_at` ([[ms, number], ...]) writes recipe numbers; `answer_delay_ms` ([lo, hi]) answers every
station request after a random delay (roles server and rtu: a PLC that serves requests once per scan; the data is
read and writes applied after the delay), and `stall_at_s`/`stall_ms` answers the first register read after that time
`stall_ms` late. It ends after `run_s`, or once every part's result came (plus `linger_s`), and prints one line:
`RESULT {json}` with times in ms since the simulator started (one clock for triggers, pulses and results).
"""

import asyncio
import ctypes
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

TRIGGER, RESULT_ACK, FAULT_RESET = 1, 2, 4
READY, BUSY, TRIGGER_ACK, RESULT_READY, OVERRUN, ALARM, REFUSED, HB_LOST = (1 << i for i in range(8))
T0 = time.monotonic()


def now_ms():
    return (time.monotonic() - T0) * 1e3


def die_with_parent():
    """In the socat child: end when the simulator ends, even when it is killed."""
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Local:
    """The PLC's own memory, served to the station (roles server and rtu)."""

    def __init__(self, s):
        self.s = s
        self.coil = False
        self.edges = []
        self.internal = False
        # After a cut: when the server listened again, and when the station's first request came.
        self.back_at, self.reconnects = None, []
        bits = lambda: [SimData(0, count=1024, values=False, datatype=DataType.BITS)]
        regs = lambda: [SimData(0, count=1024, values=0, datatype=DataType.REGISTERS)]
        self.device = SimDevice(0, simdata=(bits(), bits(), regs(), regs()), action=self.on_request)
        self.server = None
        self.port = None
        self.socat = None
        self.random = random.Random(s.get("seed", 1))
        # Register reads the station made (function code 3), as a PLC's diagnostics would count them.
        self.reads = 0
        self.stall_at = s.get("stall_at_s")

    async def on_request(self, fc, _start, address, count, _registers, values):
        if self.internal:
            return None
        if fc == 3:
            self.reads += 1
        if self.back_at is not None:
            self.reconnects.append(now_ms() - self.back_at)
            self.back_at = None
        if "answer_delay_ms" in self.s:
            lo, hi = self.s["answer_delay_ms"]
            await asyncio.sleep(self.random.uniform(lo, hi) / 1e3)
        if self.stall_at is not None and fc == 3 and now_ms() >= self.stall_at * 1e3:
            self.stall_at = None
            await asyncio.sleep(self.s.get("stall_ms", 300) / 1e3)
        if values is None:
            return None
        c = self.s["coil"]
        if fc in (5, 15) and address <= c < address + len(values):
            on = bool(values[c - address])
            if on != self.coil:
                self.edges.append((now_ms(), on))
            self.coil = on
        return None

    async def start(self):
        if self.s["role"] == "rtu":
            folder = self.folder = tempfile.mkdtemp(prefix="plc-rtu-")
            plc_end, station_end = os.path.join(folder, "plc"), os.path.join(folder, "station")
            self.socat = subprocess.Popen(
                ["socat", f"pty,raw,echo=0,link={plc_end}", f"pty,raw,echo=0,link={station_end}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
            for _ in range(200):
                if os.path.exists(plc_end) and os.path.exists(station_end):
                    break
                await asyncio.sleep(0.01)
            self.server = ModbusSerialServer(
                self.device, port=plc_end, baudrate=self.s.get("baud", 115200), parity=self.s.get("parity", "N")
            )
            await self.server.serve_forever(background=True)
            return station_end
        await self.listen(self.s.get("port", 0))
        return str(self.port)

    async def listen(self, port, context=None):
        self.server = ModbusTcpServer(self.device, address=("127.0.0.1", port))
        if context is not None:
            self.server.context = context
        await self.server.serve_forever(background=True)
        self.port = self.server.transport.sockets[0].getsockname()[1]

    async def cut(self, seconds):
        context = self.server.context
        await self.server.shutdown()
        await asyncio.sleep(seconds)
        await self.listen(self.port, context)
        self.back_at = now_ms()

    async def read(self, fc, address, count):
        self.internal = True
        try:
            return list(await self.server.context.async_getValues(1, fc, address, count))
        finally:
            self.internal = False

    async def write_commands(self, regs):
        self.internal = True
        try:
            await self.server.context.async_setValues(1, 16, self.s["cmd"], regs)
        finally:
            self.internal = False

    async def read_status(self):
        return await self.read(3, self.s["res"], 17)

    async def read_coil(self):
        return self.coil

    async def stop(self):
        await self.server.shutdown()
        if self.socat:
            self.socat.terminate()
            shutil.rmtree(self.folder, ignore_errors=True)


class Remote:
    """The station's memory, polled over Modbus TCP (role client)."""

    def __init__(self, s):
        self.s = s
        host, port = s["connect"].rsplit(":", 1)
        self.client = AsyncModbusTcpClient(host, port=int(port), timeout=1, retries=0)
        self.edges = []
        self.coil = False

    async def start(self):
        await self.client.connect()
        return "-"

    async def cut(self, seconds):
        self.client.close()
        await asyncio.sleep(seconds)
        await self.client.connect()

    async def write_commands(self, regs):
        await self.client.write_registers(self.s["cmd"], regs)

    async def read_status(self):
        return (await self.client.read_holding_registers(self.s["res"], count=17)).registers

    async def read_coil(self):
        on = bool((await self.client.read_coils(self.s["coil"], count=1)).bits[0])
        if on != self.coil:
            self.edges.append((now_ms(), on))
        self.coil = on
        return on

    async def stop(self):
        self.client.close()


async def program(io, s):
    global T0
    T0 = time.monotonic()
    cmd = [0] * 7
    written = None
    parts = s.get("parts", 0)
    period, hold = s.get("period_ms", 100), s.get("hold_ms", 1000)
    start_ms = s.get("start_ms", 300)
    next_trigger, raised_at, index = start_ms, None, 0
    triggers, results, seen = [], [], {"bits": 0, "max_depth": 0, "faults": set(), "diag": None}
    hb_stop = s.get("heartbeat_stop_s")
    cut_at, cut_for = s.get("cut_at_s"), s.get("cut_for_s", 0)
    reset_at = s.get("reset_at_s")
    last_beat, last_shown, done_at = 0, None, None
    station_beats = set()
    recipes = []
    status = None
    while now_ms() < s.get("run_s", 10) * 1e3:
        t = now_ms()
        if cut_at is not None and t >= cut_at * 1e3:
            cut_at = None
            await io.cut(cut_for)
            written = None
            continue
        if t - last_beat >= s.get("heartbeat_ms", 50) and (hb_stop is None or t < hb_stop * 1e3):
            cmd[6] = (cmd[6] + 1) & 0xFFFF
            last_beat = t
        enc = int(t * s.get("counts_per_ms", 10)) & 0xFFFFFFFF
        cmd[4], cmd[5] = enc >> 16, enc & 0xFFFF
        for at_ms, number in s.get("recipe_at", []):
            if t >= at_ms:
                cmd[3] = number
        if reset_at is not None and t >= reset_at * 1e3:
            cmd[0] |= FAULT_RESET
            if t >= reset_at * 1e3 + 100:
                cmd[0] &= ~FAULT_RESET
                reset_at = None
        try:
            status = await io.read_status()
            await io.read_coil()
        except Exception:  # link cut by the station side, or not yet back
            await asyncio.sleep(0.01)
            continue
        word = status[0]
        seen["bits"] |= word
        seen["max_depth"] = max(seen["max_depth"], status[5])
        seen["faults"].add(status[6])
        seen["diag"] = status[9:17]
        station_beats.add(status[7])
        if not recipes or recipes[-1] != status[8]:
            recipes.append(status[8])
        # Trigger.
        # The next trigger only once the station has dropped TRIGGER_ACK: it has seen the bit low.
        if raised_at is None and index < parts and t >= next_trigger and not word & TRIGGER_ACK:
            pid = s.get("first_part_id", 1000) + index
            cmd[0] |= TRIGGER
            cmd[1], cmd[2] = pid >> 16, pid & 0xFFFF
            raised_at = t
            triggers.append({"part_id": pid, "t": None, "encoder": enc})
            index += 1
        elif raised_at is not None:
            held = index == 1 and "hold_first_ms" in s
            limit = s["hold_first_ms"] if held else hold
            if (word & TRIGGER_ACK and not held) or t - raised_at >= limit:
                cmd[0] &= ~TRIGGER
                raised_at = None
                next_trigger = max(next_trigger + period, t + 1)
        # Results.
        shown = (status[2], (status[3] << 16) | status[4], status[1])
        if s.get("ack", True):
            if word & RESULT_READY and not cmd[0] & RESULT_ACK:
                results.append({"counter": shown[0], "part_id": shown[1], "code": shown[2], "t": t})
                cmd[0] |= RESULT_ACK
            elif not word & RESULT_READY and cmd[0] & RESULT_ACK:
                cmd[0] &= ~RESULT_ACK
        elif word & RESULT_READY and shown != last_shown:
            results.append({"counter": shown[0], "part_id": shown[1], "code": shown[2], "t": t})
            last_shown = shown
        if cmd != written:
            try:
                await io.write_commands(list(cmd))
            except Exception:
                await asyncio.sleep(0.01)
                continue
            if written is None or (cmd[0] & TRIGGER and not written[0] & TRIGGER):
                if triggers and triggers[-1]["t"] is None:
                    triggers[-1]["t"] = now_ms()
            written = list(cmd)
        expected = s.get("expect_results", parts)
        if expected and len(results) >= expected and index >= parts and done_at is None:
            done_at = t
        if done_at is not None and t - done_at >= s.get("linger_s", 0.5) * 1e3:
            break
        await asyncio.sleep(s.get("scan_ms", 2) / 1e3)
    seen["faults"] = sorted(seen["faults"])
    return {
        "triggers": triggers,
        "results": results,
        "pulses": pulses(io.edges),
        "seen": seen,
        "station_heartbeats": len(station_beats),
        "recipes": recipes,
        "final_status": status,
        "reconnect_ms": getattr(io, "reconnects", []),
        "station_reads": getattr(io, "reads", None),
    }


def pulses(edges):
    out, on_at = [], None
    for t, on in edges:
        if on and on_at is None:
            on_at = t
        elif not on and on_at is not None:
            out.append([on_at, t])
            on_at = None
    if on_at is not None:
        out.append([on_at, None])
    return out


async def main():
    s = json.loads(sys.argv[1])
    s.setdefault("cmd", 32)
    s.setdefault("res", 0)
    s.setdefault("coil", 0)
    io = Remote(s) if s["role"] == "client" else Local(s)
    where = await io.start()
    print(f"READY {where}", flush=True)
    if s.get("wait_for_go"):
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    try:
        report = await program(io, s)
    finally:
        await io.stop()
    print("RESULT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
