package processor

import (
	"context"
	"testing"
)

// TestPartitionTracking checks the offset a partition may commit: one past
// the longest prefix of fetched records that finished, whatever order they
// finished in.
func TestPartitionTracking(t *testing.T) {
	t.Parallel()
	type step struct {
		op     string // "add", "done", "abandon", "committed"
		offset int64
		epoch  int32
	}
	cases := []struct {
		name         string
		steps        []step
		wantCommit   int64 // -1: nothing to commit
		wantEpoch    int32
		wantInFlight int
		wantPending  int
	}{
		{
			name:       "nothing fetched, nothing to commit",
			wantCommit: -1,
		},
		{
			name:         "fetched but unfinished, nothing to commit",
			steps:        []step{{"add", 0, 1}, {"add", 1, 1}},
			wantCommit:   -1,
			wantInFlight: 2, wantPending: 2,
		},
		{
			name:       "in-order completion commits past the last one",
			steps:      []step{{"add", 0, 1}, {"add", 1, 1}, {"add", 2, 1}, {"done", 0, 0}, {"done", 1, 0}, {"done", 2, 0}},
			wantCommit: 3, wantEpoch: 1,
		},
		{
			name:       "out-of-order completion commits only the finished prefix",
			steps:      []step{{"add", 10, 1}, {"add", 11, 1}, {"add", 12, 1}, {"add", 13, 1}, {"done", 13, 0}, {"done", 11, 0}, {"done", 10, 0}},
			wantCommit: 12, wantEpoch: 1,
			wantInFlight: 1, wantPending: 2, // 12 open, 13 done behind it
		},
		{
			name:         "a later record finishing first commits nothing",
			steps:        []step{{"add", 5, 1}, {"add", 6, 1}, {"done", 6, 0}},
			wantCommit:   -1,
			wantInFlight: 1, wantPending: 2,
		},
		{
			name:       "the hole filling releases everything behind it",
			steps:      []step{{"add", 5, 1}, {"add", 6, 1}, {"add", 7, 1}, {"done", 7, 0}, {"done", 6, 0}, {"done", 5, 0}},
			wantCommit: 8, wantEpoch: 1,
		},
		{
			name:       "abandoned record holds the commit back for good",
			steps:      []step{{"add", 0, 1}, {"add", 1, 1}, {"add", 2, 1}, {"done", 0, 0}, {"abandon", 1, 0}, {"done", 2, 0}},
			wantCommit: 1, wantEpoch: 1,
			wantInFlight: 0, wantPending: 2,
		},
		{
			name:         "abandoning the first record commits nothing",
			steps:        []step{{"add", 0, 1}, {"add", 1, 1}, {"abandon", 0, 0}, {"done", 1, 0}},
			wantCommit:   -1,
			wantInFlight: 0, wantPending: 2,
		},
		{
			name:       "offset gaps (compaction, control records) commit past the last finished offset",
			steps:      []step{{"add", 3, 1}, {"add", 7, 1}, {"add", 20, 1}, {"done", 20, 0}, {"done", 3, 0}, {"done", 7, 0}},
			wantCommit: 21, wantEpoch: 1,
		},
		{
			name:       "gap before an unfinished record stops at it",
			steps:      []step{{"add", 3, 1}, {"add", 7, 1}, {"add", 20, 1}, {"done", 3, 0}, {"done", 20, 0}},
			wantCommit: 4, wantEpoch: 1,
			wantInFlight: 1, wantPending: 2,
		},
		{
			name:       "epoch is the last finished record's leader epoch",
			steps:      []step{{"add", 0, 4}, {"add", 1, 5}, {"add", 2, 6}, {"done", 0, 0}, {"done", 1, 0}},
			wantCommit: 2, wantEpoch: 5,
			wantInFlight: 1, wantPending: 1,
		},
		{
			name:       "finishing twice counts once",
			steps:      []step{{"add", 0, 1}, {"add", 1, 1}, {"done", 0, 0}, {"done", 0, 0}},
			wantCommit: 1, wantEpoch: 1,
			wantInFlight: 1, wantPending: 1,
		},
		{
			name:         "finishing an offset never fetched changes nothing",
			steps:        []step{{"add", 5, 1}, {"done", 4, 0}, {"done", 6, 0}},
			wantCommit:   -1,
			wantInFlight: 1, wantPending: 1,
		},
		{
			name:       "finishing an already committed prefix offset again changes nothing",
			steps:      []step{{"add", 0, 1}, {"done", 0, 0}, {"add", 1, 1}, {"done", 0, 0}},
			wantCommit: 1, wantEpoch: 1,
			wantInFlight: 1, wantPending: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newPartition(context.Background())
			for _, s := range tc.steps {
				switch s.op {
				case "add":
					p.add(s.offset, s.epoch)
				case "done":
					p.done(s.offset)
				case "abandon":
					p.abandon()
				default:
					t.Fatalf("unknown step %q", s.op)
				}
			}
			off, epoch, ok := p.toCommit()
			if tc.wantCommit < 0 {
				if ok {
					t.Errorf("toCommit = %d (epoch %d), want nothing to commit", off, epoch)
				}
			} else {
				if !ok || off != tc.wantCommit || epoch != tc.wantEpoch {
					t.Errorf("toCommit = %d epoch %d ok=%v, want %d epoch %d", off, epoch, ok, tc.wantCommit, tc.wantEpoch)
				}
			}
			if p.inFlight != tc.wantInFlight {
				t.Errorf("inFlight = %d, want %d", p.inFlight, tc.wantInFlight)
			}
			if len(p.pending) != tc.wantPending {
				t.Errorf("pending = %v, want %d entries", p.pending, tc.wantPending)
			}
		})
	}
}

// TestPartitionToCommitAfterCommit checks that an acknowledged commit is not
// repeated, and that progress after it is offered again.
func TestPartitionToCommitAfterCommit(t *testing.T) {
	t.Parallel()
	p := newPartition(context.Background())
	p.add(0, 1)
	p.add(1, 1)
	p.done(0)
	off, _, ok := p.toCommit()
	if !ok || off != 1 {
		t.Fatalf("toCommit = %d ok=%v, want 1", off, ok)
	}
	p.committed = off // what a successful commit records
	if off, _, ok := p.toCommit(); ok {
		t.Fatalf("toCommit after commit = %d, want nothing new", off)
	}
	// A failed commit leaves committed behind: the same offset is offered again.
	p.done(1)
	if off, _, ok := p.toCommit(); !ok || off != 2 {
		t.Fatalf("toCommit after progress = %d ok=%v, want 2", off, ok)
	}
	if off, _, ok := p.toCommit(); !ok || off != 2 {
		t.Fatalf("toCommit without a successful commit = %d ok=%v, want 2 again", off, ok)
	}
	p.committed = 2
	if off, _, ok := p.toCommit(); ok {
		t.Fatalf("toCommit after second commit = %d, want nothing new", off)
	}
}

// TestPartitionCancel checks that a partition's context ends work for it
// without touching the parent.
func TestPartitionCancel(t *testing.T) {
	t.Parallel()
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	p := newPartition(parent)
	if p.ctx.Err() != nil {
		t.Fatal("new partition's context is already done")
	}
	p.cancel()
	if p.ctx.Err() == nil {
		t.Fatal("cancel did not end the partition's context")
	}
	if parent.Err() != nil {
		t.Fatal("cancelling a partition ended its parent")
	}
}
