package pipeline

import "sync"

// outageNacks remembers, per SQS message id, how many deliveries of the message this process
// handed back because a dependency was unavailable (IsUnavailable). The max_receives check
// subtracts them: SQS counts every receive, so a good message received again and again during an
// outage would otherwise be dead-lettered as "received too often" once the outage outlasted
// max_receives deliveries. Only this process's deliveries are known; the map is bounded (the
// oldest entries go first) and an entry is dropped once its message is acked or dead-lettered.
type outageNacks struct {
	mu    sync.Mutex
	limit int
	count map[string]int
	order []string // ids in first-seen order, for eviction; may hold ids already dropped
}

func newOutageNacks(limit int) *outageNacks {
	return &outageNacks{limit: limit, count: map[string]int{}}
}

func (o *outageNacks) add(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.count[id]; !ok {
		for len(o.count) >= o.limit && len(o.order) > 0 {
			delete(o.count, o.order[0])
			o.order = o.order[1:]
		}
		o.order = append(o.order, id)
	}
	o.count[id]++
	if len(o.order) > 2*o.limit { // drop ids forgotten since
		live := o.order[:0:0]
		for _, k := range o.order {
			if _, ok := o.count[k]; ok {
				live = append(live, k)
			}
		}
		o.order = live
	}
}

func (o *outageNacks) get(id string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.count[id]
}

func (o *outageNacks) forget(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.count, id)
}

func (o *outageNacks) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.count)
}
