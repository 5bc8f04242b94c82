"""Run by Debian's /usr/bin/python3 (python3-rosidl, python3-empy, python3-catkin-pkg): prints JSON.

Usage: ros_tooling_check.py PACKAGE_DIR. For every msg/*.msg it does what rosidl_generate_interfaces
does first — rosidl_adapter converts the .msg to IDL, rosidl_parser parses the IDL — and reports the
members; package.xml is parsed and validated by catkin_pkg. Errors propagate (non-zero exit).
"""

import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

from catkin_pkg.package import parse_package
from rosidl_adapter.msg import convert_msg_to_idl
from rosidl_parser.definition import IdlLocator, Message
from rosidl_parser.parser import parse_idl_file


def main(package_dir: Path) -> dict:
    package = parse_package(str(package_dir / "package.xml"))
    package.validate()
    report = {"package": {
        "name": package.name, "format": package.package_format,
        "build_type": package.get_build_type(),
        "buildtool_depends": [d.name for d in package.buildtool_depends],
        "depends": sorted({d.name for d in (*package.build_depends, *package.exec_depends)}),
        "member_of_groups": [g.name for g in package.member_of_groups],
    }, "messages": {}}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "msg"
        out.mkdir()
        for msg in sorted((package_dir / "msg").glob("*.msg")):
            with contextlib.redirect_stdout(io.StringIO()):  # the adapter prints progress
                convert_msg_to_idl(package_dir, package.name, msg.relative_to(package_dir), out)
            idl = parse_idl_file(IdlLocator(Path(tmp), Path("msg") / f"{msg.stem}.idl"))
            [message] = idl.content.get_elements_of_type(Message)
            report["messages"][msg.stem] = {
                "namespaced_type": "/".join([*message.structure.namespaced_type.namespaces,
                                             message.structure.namespaced_type.name]),
                "members": {m.name: type(m.type).__name__ for m in message.structure.members}}
    return report


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]).resolve())))
