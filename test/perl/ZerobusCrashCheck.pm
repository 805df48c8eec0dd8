# ZerobusCrashCheck: fail any TAP test whose server log shows a crash.
#
# A background worker or backend that dies on a signal (a segfault, an
# abort), exits with a code other than 0 or 1, or PANICs restarts the whole
# cluster, and a test can still pass when the restarted cluster catches up.
# Loading this module (ZerobusNode
# and ZerobusEmulator do) makes every PostgreSQL::Test::Cluster created
# afterwards register its log files, and adds one assertion per node when
# the test calls done_testing():
#
#   ok 42 - no crash in the server log of node "faults"
#
# A test that ends another way (a die, an explicit plan) gets the same scan
# from Test2's exit callback, which turns a crash into a failing exit code.
# A kill the test made itself is not a crash: every signal the test process
# sends with Perl's kill (overridden through CORE::GLOBAL::kill for the code
# compiled after this module is loaded) is recorded, and the log line for
# exactly that PID and signal is allowed.  A kill sent another way (a shell)
# is declared with ZerobusCrashCheck::expect_kill($signal, $pid).
#
# scripts/test.sh runs the same scan over pg_regress's temporary instance
# log:  perl -Itest/perl -mZerobusCrashCheck -e 'exit ZerobusCrashCheck::scan_files_main(@ARGV)' LOG...
package ZerobusCrashCheck;

use strict;
use warnings;

use Config;

my @nodes;          # { node => $node, logs => { path => 1 } }
my %expected;       # "pid/signo" => 1: kills the test made itself
my $checked = 0;    # the done_testing assertions were emitted

my %signo;
{
	my @names = split ' ', $Config{sig_name};
	my @nums = split ' ', $Config{sig_num};
	@signo{@names} = @nums;
}

# Lines that mean a crash, and the PID/signal of "terminated by signal" ones.
sub crash_lines
{
	my ($text) = @_;
	my @bad;
	for my $line (split /\n/, $text)
	{
		if ($line =~ /\(PID (\d+)\) was terminated by signal (\d+)/)
		{
			next if $expected{"$1/$2"};
			push @bad, $line;
		}
		elsif ($line =~ /\(PID (\d+)\) exited with exit code (\d+)/)
		{
			# 0 and 1 are normal exits (1: FATAL); any other restarts the cluster too
			next if $2 <= 1 || $expected{"$1/exit"};
			push @bad, $line;
		}
		elsif ($line =~ /terminated by signal \d+/
			|| $line =~ /\bPANIC:  /
			|| $line =~ /^TRAP: /)
		{
			push @bad, $line;
		}
	}
	return @bad;
}

sub slurp
{
	my ($path) = @_;
	open(my $fh, '<', $path) or return '';
	local $/;
	my $s = <$fh>;
	close $fh;
	return $s // '';
}

sub register_node
{
	my ($node) = @_;
	push @nodes, { node => $node, logs => { $node->logfile => 1 } };
	return $node;
}

# Record that the test itself sends $signal to $pid (so its death is expected).
sub expect_kill
{
	my ($signal, @pids) = @_;
	$signal =~ s/^-//;     # a process group: its leader is the PID logged
	$signal =~ s/^SIG//;
	my $n = $signal =~ /^\d+$/ ? $signal : $signo{$signal};
	die "unknown signal $signal" unless defined $n;
	$expected{ abs($_) . "/$n" } = 1 for grep { defined && /^-?\d+$/ } @pids;
}

# Send a signal the crash check must not count as a crash (what the
# overridden kill does anyway; for code that calls CORE::kill).
sub kill_process
{
	my ($node, $signal, @pids) = @_;
	expect_kill($signal, @pids);
	return CORE::kill($signal, @pids);
}

# The crash lines of one registered node, every log file it has written.
sub node_crashes
{
	my ($entry) = @_;
	$entry->{logs}{ $entry->{node}->logfile } = 1;
	return map { crash_lines(slurp($_)) } sort keys %{ $entry->{logs} };
}

sub report_lines
{
	my (@bad) = @_;
	my @shown = @bad > 20 ? (@bad[ 0 .. 19 ], '... ' . (@bad - 20) . ' more') : @bad;
	return join("\n", 'crash lines in the server log:', @shown);
}

# Installed once, by the first "use ZerobusCrashCheck" (not by "perl -mZerobusCrashCheck",
# which scripts/test.sh uses to scan a log outside any test).
my $installed = 0;

sub import
{
	return if $installed++;
	require PostgreSQL::Test::Cluster;
	require Test2::API;

	# One assertion per node, when done_testing() is called.
	Test2::API::test2_add_callback_testing_done(sub {
		my ($trace, $hub) = @_;
		my $plan = $hub->plan;
		# with a numeric plan an extra assertion would break it: the exit callback reports
		return if defined $plan && $plan =~ /^\d+$/;
		my $ctx = Test2::API::context();
		for my $entry (@nodes)
		{
			my @bad = node_crashes($entry);
			$ctx->ok(!@bad, sprintf('no crash in the server log of node "%s"', $entry->{node}->name),
				@bad ? [ report_lines(@bad) ] : []);
		}
		$checked = 1;
		$ctx->release;
	});

	# Whatever way the test ends: a crash makes the exit code non-zero.
	Test2::API::test2_add_callback_exit(sub {
		my ($ctx, $real, $new) = @_;
		return if $checked;
		for my $entry (@nodes)
		{
			my @bad = node_crashes($entry);
			next unless @bad;
			$ctx->diag(sprintf('node "%s": ', $entry->{node}->name) . report_lines(@bad));
			$$new ||= 255;
		}
	});

	# Every signal the test sends is a kill it made itself.
	*CORE::GLOBAL::kill = sub (@) {
		my ($signal, @pids) = @_;
		eval { expect_kill($signal, @pids) };
		return CORE::kill($signal, @pids);
	};

	# Every cluster created from now on is registered, whoever creates it.
	no warnings 'redefine';
	my $orig_new = \&PostgreSQL::Test::Cluster::new;
	*PostgreSQL::Test::Cluster::new = sub { return register_node($orig_new->(@_)); };
	return;
}

# For scripts/test.sh: scan log files; prints the crash lines, returns 1 if any.
sub scan_files_main
{
	my (@files) = @_;
	my @bad = map { crash_lines(slurp($_)) } @files;
	if (@bad)
	{
		print STDERR report_lines(@bad), "\n";
		return 1;
	}
	return 0;
}

1;
