"""A strict reader of the Prometheus text exposition format 0.0.4, for the /metrics tests:
every sample line parses, belongs to a family announced by one HELP and one TYPE line
before it, and label values are read with the format's escapes."""

import re

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(r"^(%s)(?:\{(.*)\})? (\S+)$" % NAME)
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
SUFFIXES = ("_bucket", "_sum", "_count")


def _unescape(v):
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], v)


def _labels(text):
    out, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        assert m, "bad labels: %r" % text
        assert m.group(1) not in out, "label repeated: %r" % text
        out[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
    return out


def parse(text):
    """-> (samples, types, helps): samples maps (name, frozenset of label pairs) to a float."""
    assert text.endswith("\n"), "the text must end with a newline"
    samples, types, helps = {}, {}, {}
    for line in text.split("\n")[:-1]:
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert name not in helps, "HELP twice: " + name
            assert help_, "empty HELP: " + name
            helps[name] = help_
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name not in types, "TYPE twice: " + name
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            types[name] = kind
            continue
        assert line and not line.startswith("#"), "unexpected line %r" % line
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels, value = m.group(1), _labels(m.group(2) or ""), m.group(3)
        family = name
        if name not in types:
            for s in SUFFIXES:
                if name.endswith(s) and name[: -len(s)] in types:
                    family = name[: -len(s)]
        assert family in types and family in helps, "no TYPE/HELP before %r" % line
        if types[family] == "counter":
            assert name.endswith("_total"), "a counter's name ends in _total: " + name
        key = (name, frozenset(labels.items()))
        assert key not in samples, "sample repeated: %r" % line
        samples[key] = float(value)
    return samples, types, helps


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples, name):
    """Every (labels dict, value) of one sample name."""
    return [(dict(k[1]), v) for k, v in samples.items() if k[0] == name]


def check_histograms(samples, types):
    """Buckets cumulative, +Inf equal to _count, for every series of every histogram."""
    for fam, kind in types.items():
        if kind != "histogram":
            continue
        groups = {}
        for labels, v in series(samples, fam + "_bucket"):
            le = labels.pop("le")
            groups.setdefault(frozenset(labels.items()), []).append((float(le), v))
        for key, buckets in groups.items():
            buckets.sort()
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), "buckets not cumulative: %s %r" % (fam, buckets)
            assert buckets[-1][0] == float("inf"), "no +Inf bucket: %s" % fam
            assert samples[(fam + "_count", key)] == counts[-1], fam
            assert (fam + "_sum", key) in samples, fam
