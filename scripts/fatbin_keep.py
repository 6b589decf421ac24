"""Zero the device code of a CUDA shared library for every GPU architecture but the ones kept.

A CUDA library carries its kernels compiled for several architectures in its `.nv_fatbin`
section; the driver loads only the one that matches the GPU. Zeroing the others (same size, same
headers, so every offset stays valid) lets the file compress to a fraction of its size, which is
what a transfer limit needs; on a GPU of a kept architecture it runs as before, on any other it
finds no kernel. The layout is the fatbin container's: a 16-byte header (magic 0xBA55ED50,
version, header size, payload size) followed by entries, each with its own header (kind, header
size, payload size at offset 8, architecture at offset 28).

  python scripts/fatbin_keep.py LIB.so 90[,100] OUT.so
"""
import struct
import sys
from collections import Counter

MAGIC = 0xBA55ED50


def section(data: bytes, wanted: str):
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i):
        name, _typ, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, off, size

    strtab = header(shstrndx)[1]
    for i in range(shnum):
        name, off, size = header(i)
        end = data.index(b"\0", strtab + name)
        if data[strtab + name:end].decode() == wanted:
            return off, size
    raise SystemExit(f"no {wanted} section")


def main() -> int:
    src, keep, dst = sys.argv[1], {int(a) for a in sys.argv[2].split(",")}, sys.argv[3]
    data = bytearray(open(src, "rb").read())
    off, size = section(data, ".nv_fatbin")
    p, end = off, off + size
    kept, zeroed = Counter(), Counter()
    while p + 16 <= end:
        magic, _ver, hsz, fsz = struct.unpack_from("<IHHQ", data, p)
        if magic != MAGIC:
            p += 8  # containers are 8-byte aligned
            continue
        q, qe = p + hsz, p + hsz + fsz
        while q < qe:
            ehs = struct.unpack_from("<I", data, q + 4)[0]
            psz = struct.unpack_from("<Q", data, q + 8)[0]
            arch = struct.unpack_from("<I", data, q + 28)[0]
            if arch in keep:
                kept[arch] += psz
            else:
                data[q + ehs:q + ehs + psz] = bytes(psz)
                zeroed[arch] += psz
            q += ehs + psz
        p = qe
    if not kept:
        raise SystemExit(f"no device code for {sorted(keep)} in {src}: nothing would run")
    open(dst, "wb").write(data)
    print(f"kept {dict(kept)} bytes, zeroed {dict(zeroed)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
