#!/usr/bin/perl
# Reads a TAP file with TAP::Parser (what prove uses) and prints, as JSON,
# every test line with the YAMLish block TAP::Parser attached to it, plus the
# parse errors: the tests compare that with what qcrash meant to write.
use strict;
use warnings;
use TAP::Parser;
use JSON::PP;

my $parser = TAP::Parser->new({ source => $ARGV[0] });
my @tests;
while (my $r = $parser->next) {
    if ($r->is_test) {
        push @tests, { number => $r->number + 0, ok => ($r->is_ok ? JSON::PP::true : JSON::PP::false), description => $r->description };
    } elsif ($r->is_yaml) {
        die "YAML block before any test\n" unless @tests;
        $tests[-1]{yaml} = $r->data;
    }
}
print JSON::PP->new->canonical->encode({
    version => $parser->version + 0,
    plan => $parser->plan,
    tests => \@tests,
    parse_errors => [ $parser->parse_errors ],
    passed => [ map { $_ + 0 } $parser->passed ],
    failed => [ map { $_ + 0 } $parser->failed ],
});
