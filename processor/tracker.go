package processor

import (
	"context"
	"sort"
)

// partition tracks the records of one assigned partition that are not yet
// safe to commit. Records finish out of order; the committable offset is
// the one after the longest finished prefix.
type partition struct {
	ctx    context.Context
	cancel context.CancelFunc

	pending   []entry // ascending offsets, as fetched
	inFlight  int     // records dispatched and not yet finished or abandoned
	commit    int64   // next offset to commit (one past the finished prefix), -1 before any
	epoch     int32
	committed int64 // last offset acknowledged by a commit, -1 before any
}

type entry struct {
	offset int64
	epoch  int32
	done   bool
}

func newPartition(parent context.Context) *partition {
	ctx, cancel := context.WithCancel(parent)
	return &partition{ctx: ctx, cancel: cancel, commit: -1, committed: -1}
}

func (p *partition) add(offset int64, epoch int32) {
	p.pending = append(p.pending, entry{offset: offset, epoch: epoch})
	p.inFlight++
}

// done marks offset finished and advances the committable offset past the
// finished prefix.
func (p *partition) done(offset int64) {
	i := sort.Search(len(p.pending), func(i int) bool { return p.pending[i].offset >= offset })
	if i == len(p.pending) || p.pending[i].offset != offset || p.pending[i].done {
		return
	}
	p.pending[i].done = true
	p.inFlight--
	n := 0
	for n < len(p.pending) && p.pending[n].done {
		n++
	}
	if n > 0 {
		last := p.pending[n-1]
		p.commit, p.epoch = last.offset+1, last.epoch
		p.pending = p.pending[n:]
	}
}

// abandon forgets a dispatched record without finishing it: its offset
// stays uncommitted so that the next owner redoes it.
func (p *partition) abandon() { p.inFlight-- }

// toCommit returns the offset to commit when it moved past the last commit.
func (p *partition) toCommit() (offset int64, epoch int32, ok bool) {
	return p.commit, p.epoch, p.commit > p.committed
}
