#!/usr/bin/env python3
# Parses a KTAP file with the kernel's own parser (tools/testing/kunit/
# kunit_parser.py, from the directory given first) and prints the tree it
# built as JSON: name, status, counts (including the parser's own error
# count) and subtests. kunit_parser prints its progress on kunit_printer's
# stdout; that goes to stderr here so stdout carries only the JSON.
import json
import sys

kunit_dir, ktap_file = sys.argv[1], sys.argv[2]
sys.path.insert(0, kunit_dir)
import kunit_printer  # noqa: E402
kunit_printer.stdout._output = sys.stderr
kunit_printer.stdout._use_color = False
import kunit_parser  # noqa: E402


def tree(t):
    c = t.counts
    return {
        'name': t.name,
        'status': t.status.name,
        'expected_count': t.expected_count,
        'counts': {'passed': c.passed, 'failed': c.failed, 'crashed': c.crashed, 'skipped': c.skipped, 'errors': c.errors},
        'log': t.log,
        'subtests': [tree(s) for s in t.subtests],
    }


with open(ktap_file, encoding='utf-8', errors='replace') as f:
    test = kunit_parser.parse_run_tests(f.readlines())
print(json.dumps(tree(test)))
