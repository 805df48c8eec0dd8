# ZerobusEmulator: start and drive the Databricks emulator from TAP tests.
#
#   my $emu = ZerobusEmulator->new(args => ['--sink']);
#   $emu->create_table('main.default.t', [ { name => 'id', type => 'BIGINT' } ]);
#   $emu->faults({ ack_delay_ms => 150 });
#   is($emu->count('main.default.t'), 10);
#   $emu->restart;    # same ports, same TLS files, same SQLite file
#
# The emulator runs under Debian's /usr/bin/python3 on free loopback ports;
# its control API is plain JSON over HTTP.
package ZerobusEmulator;

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use Time::HiRes qw(usleep);
use Test::More;
use ZerobusCrashCheck;    # every node's log is checked for crashes at done_testing

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/../..');

sub new
{
	my ($class, %opts) = @_;
	my $dir = tempdir('zb-emu-XXXXXX', TMPDIR => 1, CLEANUP => 1);
	my $self = bless {
		dir => $dir,
		args => $opts{args} || [],
		http => HTTP::Tiny->new(timeout => 60),
		json => JSON::PP->new->utf8->canonical,
		ports => undef,
		pid => undef,
	}, $class;
	$self->start;
	return $self;
}

sub start
{
	my ($self) = @_;
	my $pf = "$self->{dir}/ports.json";
	unlink $pf;
	my @cmd = ('/usr/bin/python3', "$root/emulator/zerobus_emulator.py",
		'--ports-file', $pf, '--tls-dir', "$self->{dir}/tls",
		'--db', "$self->{dir}/store.db", '--log', "$self->{dir}/emulator.log",
		@{ $self->{args} });
	if ($self->{ports})
	{
		# a restart keeps the addresses the database was configured with
		push @cmd, '--grpc-port', $self->{ports}{grpc}, '--grpcs-port', $self->{ports}{grpcs},
		  '--http-port', $self->{ports}{http}, '--https-port', $self->{ports}{https};
	}
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		exec(@cmd) or die "exec: $!";
	}
	$self->{pid} = $pid;
	for (1 .. 600)
	{
		last if -s $pf;
		if (waitpid($pid, 1) == $pid)    # WNOHANG
		{
			die "emulator exited at start:\n" . $self->log_tail(40);
		}
		usleep(50_000);
	}
	die "emulator did not start:\n" . $self->log_tail(40) unless -s $pf;
	open(my $fh, '<', $pf) or die;
	local $/;
	$self->{ports} = $self->{json}->decode(<$fh>);
	close $fh;
	return $self;
}

sub stop
{
	my ($self, $signal) = @_;
	return unless $self->{pid};
	kill($signal || 'TERM', $self->{pid});
	waitpid($self->{pid}, 0);
	$self->{pid} = undef;
}

sub restart
{
	my ($self) = @_;
	$self->stop;
	$self->start;
}

sub DESTROY
{
	my ($self) = @_;
	local $?;
	$self->stop if $self->{pid};
}

sub grpc_url { return "http://127.0.0.1:$_[0]{ports}{grpc}"; }
sub grpcs_url { return "https://localhost:$_[0]{ports}{grpcs}"; }
sub http_url { return "http://127.0.0.1:$_[0]{ports}{http}"; }
sub https_url { return "https://localhost:$_[0]{ports}{https}"; }
sub ca_file { return "$_[0]{dir}/tls/ca.crt"; }
sub wrong_ca_file { return "$_[0]{dir}/tls/wrong-ca.crt"; }
sub log_file { return "$_[0]{dir}/emulator.log"; }

sub log_tail
{
	my ($self, $n) = @_;
	open(my $fh, '<', $self->log_file) or return '';
	my @l = <$fh>;
	close $fh;
	return join('', @l[ ($#l - $n + 1 < 0 ? 0 : $#l - $n + 1) .. $#l ]);
}

# Control API call; dies on a non-2xx answer.
sub api
{
	my ($self, $method, $path, $body) = @_;
	my %o = (headers => { 'Content-Type' => 'application/json' });
	$o{content} = $self->{json}->encode($body) if defined $body;
	my $r = $self->{http}->request($method, $self->http_url . $path, \%o);
	die "emulator $method $path: $r->{status} $r->{content}" unless $r->{success};
	return length($r->{content}) ? $self->{json}->decode($r->{content}) : undef;
}

sub create_table
{
	my ($self, $name, $columns) = @_;
	return $self->api('POST', '/emulator/tables', { name => $name, columns => $columns });
}

sub rows { my ($s, $t) = @_; return $s->api('GET', "/emulator/tables/$t/rows"); }
sub count { my ($s, $t) = @_; return $s->api('GET', "/emulator/tables/$t/count")->{count}; }
sub sql { my ($s, $q) = @_; return $s->api('POST', '/emulator/sql', { sql => $q }); }
sub faults { my ($s, $f) = @_; return $s->api('POST', '/emulator/faults', $f); }
sub clear_faults { my ($s) = @_; return $s->api('DELETE', '/emulator/faults'); }
sub stats { my ($s) = @_; return $s->api('GET', '/emulator/stats'); }
sub statements { my ($s) = @_; return $s->api('GET', '/emulator/statements'); }
# responses a sql_malformed fault damaged: [{target, kind, statement_id, original, damaged (base64)}]
sub damaged { my ($s) = @_; return $s->api('GET', '/emulator/damaged')->{responses}; }
sub reset { my ($s, $b) = @_; return $s->api('POST', '/emulator/reset', $b || {}); }

# Wait until $cond->() is true (polling); returns its last value.
sub wait_for
{
	my ($self, $cond, $timeout_s) = @_;
	$timeout_s ||= 60;
	my $v;
	for (1 .. $timeout_s * 10)
	{
		$v = $cond->();
		return $v if $v;
		usleep(100_000);
	}
	return $v;
}

1;
