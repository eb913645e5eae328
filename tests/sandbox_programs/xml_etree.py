"""Sandbox corpus: xml etree (an ordinary program that must pass in every mode)."""

import xml.etree.ElementTree as ET


def titles(xml_text):
    return [book.findtext("title") for book in ET.fromstring(xml_text).iter("book")]


def check(candidate):
    text = "<lib><book><title>A</title></book><book><title>B</title></book></lib>"
    assert candidate(text) == ["A", "B"]


check(titles)
root = ET.Element("root", attrib={"v": "1"})
ET.SubElement(root, "child").text = "x"
assert ET.tostring(root) == b'<root v="1"><child>x</child></root>'
print(ET.tostring(root, encoding="unicode"))
