package server_test

import (
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
)

// throttleEnv is a server whose login throttle reads a clock the test sets.
func throttleEnv(t *testing.T) (*testEnv, *clock) {
	e := newEnv(t, server.Config{})
	clk := &clock{now: time.Now()}
	server.SetThrottleClock(e.srv, clk.Now)
	return e, clk
}

func loginAs(c *client, user string, authKey []byte) *resp {
	return c.json("POST", "/v1/login", &wire.LoginRequest{User: user, AuthKey: authKey})
}

func wantThrottled(t *testing.T, r *resp) {
	t.Helper()
	r.wantErr(t, 429, wire.CodeThrottled)
	n, err := strconv.Atoi(r.header.Get(wire.HeaderRetryAfter))
	if err != nil || n < 1 || n > 16*60 {
		t.Fatalf("Retry-After %q, want seconds", r.header.Get(wire.HeaderRetryAfter))
	}
}

func TestThrottleSourceAddress(t *testing.T) {
	t.Parallel()
	e, clk := throttleEnv(t)
	alice := e.register("alice")
	wrong := make([]byte, 32)

	attacker := e.anon("127.0.0.1")
	for range 3 {
		loginAs(attacker, "alice", wrong).wantErr(t, 401, wire.CodeBadCredentials)
	}
	wantThrottled(t, loginAs(attacker, "alice", wrong))
	// Inside the delay even the right password is refused from there,
	// before any check.
	wantThrottled(t, loginAs(attacker, "alice", alice.a.authKey))

	// The owner, elsewhere, still logs in.
	owner := e.anon("127.0.0.2")
	loginAs(owner, "alice", alice.a.authKey).want(t, 200, nil)

	// After the delay the attacker may guess again; the delay then doubles.
	clk.advance(1100 * time.Millisecond)
	loginAs(attacker, "alice", wrong).wantErr(t, 401, wire.CodeBadCredentials)
	clk.advance(1100 * time.Millisecond)
	wantThrottled(t, loginAs(attacker, "alice", wrong))
	clk.advance(time.Second)
	loginAs(attacker, "alice", wrong).wantErr(t, 401, wire.CodeBadCredentials)

	// A wrong current password in passwd counts as a failed login.
	pw := &wire.PasswdRequest{AuthKey: wrong, NewAuthKey: wrong, NewKDF: alice.a.kdf, NewWrappedMaster: make([]byte, crypto.WrappedMasterKeySize)}
	c2 := e.anon("127.0.0.5")
	c2.a = alice.a
	c2.login(t)
	for range 3 {
		c2.json("POST", "/v1/passwd", pw).wantErr(t, 401, wire.CodeBadCredentials)
	}
	wantThrottled(t, c2.json("POST", "/v1/passwd", pw))
}

func TestThrottleUnknownUser(t *testing.T) {
	t.Parallel()
	e, _ := throttleEnv(t)
	c := e.anon("127.0.0.3")
	for range 3 {
		loginAs(c, "ghost", make([]byte, 32)).wantErr(t, 401, wire.CodeBadCredentials)
	}
	wantThrottled(t, loginAs(c, "ghost", make([]byte, 32)))

	// Many names from one address: the per-address counter stops a
	// guesser who changes names.
	d := e.anon("127.0.0.4")
	throttled := false
	for i := range 25 {
		r := loginAs(d, "ghost"+strconv.Itoa(i), make([]byte, 32))
		if r.status == 429 {
			wantThrottled(t, r)
			throttled = true
			if i < 20 {
				t.Fatalf("throttled after %d failures, below the per-address allowance", i)
			}
			break
		}
		r.wantErr(t, 401, wire.CodeBadCredentials)
	}
	if !throttled {
		t.Fatal("25 guesses at different names from one address were never throttled")
	}
}

func TestThrottlePerAccount(t *testing.T) {
	t.Parallel()
	e, clk := throttleEnv(t)
	bob := e.register("bob")
	wrong := make([]byte, 32)
	// A distributed guesser: 3 guesses from each of 4 addresses, under the
	// per-pair allowance each. The account's counter eventually blocks.
	var codes []int
	for i := 1; i <= 4; i++ {
		c := e.anon("127.0.1." + strconv.Itoa(i))
		for range 3 {
			codes = append(codes, loginAs(c, "bob", wrong).status)
		}
	}
	sort.Ints(codes)
	if codes[0] != 401 || codes[len(codes)-1] != 429 {
		t.Fatalf("statuses %v: want 401s, then 429 once the account is throttled", codes)
	}
	// Now even the owner, from a fresh address, must wait.
	owner := e.anon("127.0.1.99")
	wantThrottled(t, loginAs(owner, "bob", bob.a.authKey))
	// Other accounts are not affected.
	carol := e.register("carol")
	loginAs(e.anon("127.0.1.98"), "carol", carol.a.authKey).want(t, 200, nil)
	// The account delay is capped at a minute.
	clk.advance(61 * time.Second)
	loginAs(owner, "bob", bob.a.authKey).want(t, 200, nil)
}

// TestPreloginNotThrottled: docs/protocol.md says prelogin is not
// throttled (it reveals nothing), so an address whose login guesses are
// being delayed still gets the same stable parameters.
func TestPreloginNotThrottled(t *testing.T) {
	t.Parallel()
	e, _ := throttleEnv(t)
	e.register("alice")
	c := e.anon("127.0.0.6")
	want := c.json("POST", "/v1/prelogin", &wire.PreloginRequest{User: "alice"})
	for range 3 {
		loginAs(c, "alice", make([]byte, 32)).wantErr(t, 401, wire.CodeBadCredentials)
	}
	wantThrottled(t, loginAs(c, "alice", make([]byte, 32)))
	r := c.json("POST", "/v1/prelogin", &wire.PreloginRequest{User: "alice"})
	if r.status != 200 || string(r.body) != string(want.body) {
		t.Fatalf("prelogin from a throttled address answered %v, want the same 200 as before: %v", r, want)
	}
}
