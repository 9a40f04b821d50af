package cache

import (
	"context"
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	b := NewBudget(10)
	if !b.TryAcquire(6) || b.TryAcquire(6) {
		t.Fatal("TryAcquire ignores the cap")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	calls := 0
	if err := b.Acquire(ctx, 6, func() { calls++ }); err == nil {
		t.Fatal("Acquire beyond the cap did not wait")
	}
	if calls == 0 {
		t.Fatal("Acquire did not ask for memory to be freed")
	}
	done := make(chan error)
	go func() { done <- b.Acquire(context.Background(), 6, nil) }()
	time.Sleep(20 * time.Millisecond)
	b.Release(6)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if b.Used() != 6 {
		t.Fatalf("used %d", b.Used())
	}
	b.Release(6)
	// A request larger than the whole budget is granted when it is empty.
	if err := b.Acquire(context.Background(), 100, nil); err != nil {
		t.Fatal(err)
	}
	b.Release(100)
}
