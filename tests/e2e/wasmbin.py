"""Hand-made WebAssembly pieces for hostile-component tests: core modules
with several memories, big tables or a start function that grows memory,
appended to a real plugin component as extra core instances."""


def leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def section(ident: int, content: bytes) -> bytes:
    return bytes([ident]) + leb(len(content)) + content


def vec(items: list[bytes]) -> bytes:
    return leb(len(items)) + b"".join(items)


CORE_HEADER = b"\0asm\x01\0\0\0"
COMPONENT_HEADER = b"\0asm\x0d\0\x01\0"


def core_module(memories: list[int] = (), tables: list[int] = (), grow_pages: int | None = None) -> bytes:
    """A core module with `memories` (their sizes in 64 KiB pages), funcref
    `tables` (their sizes in elements), and, with `grow_pages`, a start
    function growing memory 0 by that many pages that traps if refused."""
    body = CORE_HEADER
    if grow_pages is not None:
        body += section(1, vec([b"\x60\x00\x00"]))  # type 0: [] -> []
        body += section(3, vec([leb(0)]))  # func 0 has type 0
    if tables:
        body += section(4, vec([b"\x70\x00" + leb(n) for n in tables]))
    if memories:
        body += section(5, vec([b"\x00" + leb(n) for n in memories]))
    if grow_pages is not None:
        body += section(8, leb(0))  # start: func 0
        code = (
            b"\x00"  # no locals
            + b"\x41" + sleb(grow_pages) + b"\x40\x00"  # memory.grow 0
            + b"\x41\x7f\x46"  # == -1
            + b"\x04\x40\x00\x0b"  # if: unreachable
            + b"\x0b"
        )
        body += section(10, vec([leb(len(code)) + code]))
    return body


def top_level_sections(component: bytes):
    assert component[:8] == COMPONENT_HEADER, "not a component"
    at = 8
    while at < len(component):
        ident = component[at]
        at += 1
        size = shift = 0
        while True:
            byte = component[at]
            at += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        yield ident, component[at : at + size]
        at += size


def with_core_instances(component: bytes, modules: list[bytes]) -> bytes:
    """`component` with each of `modules` appended and instantiated (with no
    imports) when the component is: they add to what every instance of it
    holds, though nothing calls into them."""
    defined = sum(1 for ident, _ in top_level_sections(component) if ident == 1)
    out = component
    for index, module in enumerate(modules, start=defined):
        out += section(1, module)
        out += section(2, vec([b"\x00" + leb(index) + vec([])]))
    return out
