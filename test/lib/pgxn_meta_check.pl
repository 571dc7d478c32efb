#!/usr/bin/perl
# META.json against the PGXN Meta Spec v1 (https://pgxn.org/spec/): the
# required keys with their types, semantic versions, a known license, and
# every extension in "provides" at the release's version with its file in
# the distribution. TAP on stdout, one line per rule.
#
#   pgxn_meta_check.pl DIST_DIR [CONTROL_DEFAULT_VERSION]
#
# DIST_DIR is the unpacked release (META.json at its top); with the control
# file's default_version given, the release must be that version.
use strict;
use warnings;
use JSON::PP;
use Test::More;

my ($dir, $control_version) = @ARGV;
my $text = do { local (@ARGV, $/) = ("$dir/META.json"); <> };
my $meta = eval { JSON::PP->new->decode($text) };
ok($meta && ref $meta eq 'HASH', 'META.json is a JSON object') or BAIL_OUT("META.json: $@");

my $semver = qr/^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z-]+)?$/;
my %licenses = map { $_ => 1 } qw(agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd
	freebsd gfdl_1_2 gfdl_1_3 gpl_1 gpl_2 gpl_3 lgpl_2_1 lgpl_3_0 mit mozilla_1_0 mozilla_1_1
	openssl perl_5 postgresql qpl_1_0 ssleay sun zlib open_source restricted unrestricted unknown);

for my $key (qw(name abstract maintainer license provides meta-spec version))
{
	ok(exists $meta->{$key}, "required key \"$key\" is present");
}
like($meta->{name} // '', qr/^[^\/\\\s]{2,}$/, 'name: at least two characters, no slash, backslash or space');
like($meta->{version} // '', $semver, 'version is a semantic version');
is($meta->{'meta-spec'}{version} // '', '1.0.0', 'meta-spec version 1.0.0');
my @maint = ref $meta->{maintainer} eq 'ARRAY' ? @{ $meta->{maintainer} } : ($meta->{maintainer} // '');
ok(@maint && !grep({ !defined || ref || $_ eq '' } @maint), 'maintainer: a string or a list of strings');
my @lic = ref $meta->{license} eq 'ARRAY' ? @{ $meta->{license} }
	: ref $meta->{license} eq 'HASH' ? () : ($meta->{license} // '');
ok(ref $meta->{license} eq 'HASH' || (@lic && !grep { !$licenses{$_} } @lic),
	'license: one of the spec\'s names (or a name => URL map)');

my $provides = $meta->{provides};
ok(ref $provides eq 'HASH' && %$provides, 'provides names at least one extension');
for my $ext (sort keys %{ $provides // {} })
{
	my $p = $provides->{$ext};
	like($p->{version} // '', $semver, "provides $ext: version is a semantic version");
	is($p->{version}, $meta->{version}, "provides $ext: at the release's version");
	ok(defined $p->{file} && -f "$dir/$p->{file}", "provides $ext: file $p->{file} is in the release");
	ok(!defined $p->{docfile} || -f "$dir/$p->{docfile}", "provides $ext: docfile is in the release");
}
if (defined $control_version)
{
	is($meta->{version}, "$control_version.0", "version is the control file's default_version ($control_version)");
	my ($ext) = keys %{ $provides // {} };
	is($provides->{$ext}{file} // '', "sql/$ext--$control_version.sql", 'provides names the install script of that version');
}
if (exists $meta->{prereqs})
{
	my $ok = ref $meta->{prereqs} eq 'HASH';
	for my $phase (keys %{ $ok ? $meta->{prereqs} : {} })
	{
		$ok &&= $phase =~ /^(configure|build|test|runtime|develop)$/;
		for my $rel (keys %{ $meta->{prereqs}{$phase} })
		{
			$ok &&= $rel =~ /^(requires|recommends|suggests|conflicts)$/;
			$ok &&= !grep { !/^(0|$semver|[<>=!]=?\s*\S+)/ } values %{ $meta->{prereqs}{$phase}{$rel} };
		}
	}
	ok($ok, 'prereqs: phases, relationships and versions as the spec names them');
}
ok(!grep({ !/^x_|^X_/ } grep { !/^(name|abstract|description|version|maintainer|license|provides|meta-spec|prereqs|release_status|resources|no_index|tags|generated_by)$/ } keys %$meta),
	'every other key is custom (x_...)');
done_testing();
