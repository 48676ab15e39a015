// sarama-check drives a Kafka-compatible broker with IBM/sarama and checks every outcome:
//
//  1. ClusterAdmin creates one 4-partition topic per codec with topic configs, and reads
//     them back (DescribeTopics, DescribeConfig, ListTopics); a second create is refused
//     with TOPIC_ALREADY_EXISTS.
//  2. An idempotent SyncProducer (acks=all, one request in flight, retries on) writes
//     keyed messages with headers and explicit timestamps, compressed with the run's codec;
//     each (partition, offset) it is given must follow the last one of its partition.
//  3. A classic-protocol consumer group of two members (separate clients in this process)
//     reads it all: member A alone reads the first half, member B joins (a rebalance that
//     moves partitions with their committed offsets), and both read the second half. Every
//     message must arrive exactly once, byte for byte (key, value, headers, timestamp), in
//     offset order per partition, each claim starting at the committed offset; the
//     committed offsets (ListConsumerGroupOffsets) must equal the end offsets, the group
//     must be Stable with both members and the run's protocol, then Empty once they leave.
//
// On success it prints one line of JSON (the summary); on any mismatch it prints what went
// wrong to stderr and exits 1. tests/integration/test_sarama.py builds and runs it; by hand:
//
//	cd tests/go/sarama && go build -o ../../../target/sarama-check/sarama-check .
//	target/sarama-check/sarama-check -bootstrap 127.0.0.1:9092 -prefix try1
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

var (
	bootstrap    = flag.String("bootstrap", "127.0.0.1:9092", "broker address")
	prefix       = flag.String("prefix", "sarama", "prefix of the topic and group names")
	messages     = flag.Int("messages", 5000, "messages per codec run")
	partitions   = flag.Int("partitions", 4, "partitions per topic")
	runsFlag     = flag.String("runs", "none:range,gzip:sticky,snappy:cooperative-sticky,lz4:roundrobin,zstd:cooperative-sticky", "codec:balance-strategy pairs, one run each")
	versionFlag  = flag.String("kafka-version", "4.0.0", "sarama Config.Version")
	parallel     = flag.Bool("parallel", true, "run the codecs concurrently")
	timeout      = flag.Duration("timeout", 50*time.Second, "give up (and fail) after this long")
	stepTimeout  = flag.Duration("step-timeout", 20*time.Second, "longest wait for one step (a rebalance, a half of the messages)")
	saramaLogger = flag.Bool("sarama-log", false, "print sarama's own log to stderr")
)

var kafkaVersion sarama.KafkaVersion

func main() {
	flag.Parse()
	log.SetFlags(log.Lmicroseconds)
	log.SetPrefix("sarama-check: ")
	if *saramaLogger {
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Lmicroseconds)
	}
	var err error
	if kafkaVersion, err = sarama.ParseKafkaVersion(*versionFlag); err != nil {
		log.Fatalf("bad -kafka-version: %v", err)
	}
	if *messages < 4 || *messages%2 != 0 {
		log.Fatalf("-messages must be even and at least 4")
	}

	var runs []*run
	for i, spec := range strings.Split(*runsFlag, ",") {
		codecName, strategyName, ok := strings.Cut(spec, ":")
		if !ok {
			log.Fatalf("bad -runs entry %q (want codec:strategy)", spec)
		}
		r, err := newRun(i, codecName, strategyName)
		if err != nil {
			log.Fatal(err)
		}
		runs = append(runs, r)
	}

	start := time.Now()
	go func() {
		time.Sleep(*timeout)
		for _, r := range runs {
			state := "(its lock is held)"
			if r.mu.TryLock() {
				state = r.stateLocked()
				r.mu.Unlock()
			}
			log.Printf("%s: at timeout: step %q, %s", r.codecName, r.step.Load(), state)
		}
		log.Printf("FAIL: not done after %v", *timeout)
		os.Exit(1)
	}()

	admin, err := sarama.NewClusterAdmin([]string{*bootstrap}, baseConfig("sarama-check-admin"))
	if err != nil {
		log.Fatalf("FAIL: NewClusterAdmin: %v", err)
	}
	defer admin.Close()

	var wg sync.WaitGroup
	for _, r := range runs {
		r.admin = admin
		if *parallel {
			wg.Go(r.execute)
		} else {
			r.execute()
		}
	}
	wg.Wait()

	failed := false
	for _, r := range runs {
		for _, e := range r.failures() {
			failed = true
			log.Printf("FAIL [%s/%s]: %s", r.codecName, r.strategyName, e)
		}
	}
	if failed {
		os.Exit(1)
	}

	summary := map[string]any{
		"ok":                 true,
		"kafka_version":      kafkaVersion.String(),
		"sarama_version":     "v1.61.1",
		"messages_per_codec": *messages,
		"partitions":         *partitions,
		"elapsed_ms":         time.Since(start).Milliseconds(),
	}
	var results []map[string]any
	for _, r := range runs {
		results = append(results, r.summary)
	}
	summary["runs"] = results
	line, _ := json.Marshal(summary)
	fmt.Println(string(line))
}

func baseConfig(clientID string) *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = clientID
	c.Version = kafkaVersion
	c.Metadata.Retry.Backoff = 100 * time.Millisecond
	c.Admin.Timeout = 10 * time.Second
	return c
}

var codecs = map[string]sarama.CompressionCodec{
	"none":   sarama.CompressionNone,
	"gzip":   sarama.CompressionGZIP,
	"snappy": sarama.CompressionSnappy,
	"lz4":    sarama.CompressionLZ4,
	"zstd":   sarama.CompressionZSTD,
}

var strategies = map[string]func() sarama.BalanceStrategy{
	"range":              sarama.NewBalanceStrategyRange,
	"roundrobin":         sarama.NewBalanceStrategyRoundRobin,
	"sticky":             sarama.NewBalanceStrategySticky,
	"cooperative-sticky": sarama.NewBalanceStrategyCooperativeSticky,
}

// record is one produced message and where the broker put it.
type record struct {
	key        []byte
	value      []byte
	headers    []sarama.RecordHeader
	timestamp  time.Time
	partition  int32 // where the producer was told it went; -1 until then
	offset     int64
	consumedAt []tp // where each delivery of it came from
}

type tp struct {
	partition int32
	offset    int64
}

type run struct {
	index        int
	codecName    string
	codec        sarama.CompressionCodec
	strategyName string
	strategy     func() sarama.BalanceStrategy
	topic, group string
	admin        sarama.ClusterAdmin
	step         atomicString

	mu       sync.Mutex
	records  []*record // every message of the run, made up front; message i's value starts "<codec>/<i>|"
	produced int       // how many of them the producer has been acknowledged
	unique   int       // records consumed at least once
	dups     int
	errs     []string
	errCount int
	members  []*member
	summary  map[string]any
}

func newRun(index int, codecName, strategyName string) (*run, error) {
	codec, ok := codecs[codecName]
	if !ok {
		return nil, fmt.Errorf("unknown codec %q", codecName)
	}
	strategy, ok := strategies[strategyName]
	if !ok {
		return nil, fmt.Errorf("unknown balance strategy %q", strategyName)
	}
	r := &run{
		index: index, codecName: codecName, codec: codec, strategyName: strategyName, strategy: strategy,
		topic: fmt.Sprintf("%s-%s", *prefix, codecName), group: fmt.Sprintf("%s-%s-group", *prefix, codecName),
	}
	for i := range *messages {
		r.records = append(r.records, r.makeRecord(i))
	}
	return r, nil
}

// fail notes a mismatch; the run carries on so that one report shows them all.
func (r *run) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failLocked(format, args...)
}

func (r *run) failLocked(format string, args ...any) {
	r.errCount++
	if len(r.errs) < 20 {
		r.errs = append(r.errs, fmt.Sprintf(format, args...))
	}
}

func (r *run) failures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]string(nil), r.errs...)
	if r.errCount > len(r.errs) {
		out = append(out, fmt.Sprintf("... and %d more", r.errCount-len(r.errs)))
	}
	return out
}

func (r *run) failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errCount > 0
}

func (r *run) state() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stateLocked()
}

func (r *run) stateLocked() string {
	var ms []string
	for _, m := range r.members {
		ms = append(ms, m.describe())
	}
	return fmt.Sprintf("produced %d, consumed %d unique (%d duplicates), members [%s], failures %v",
		r.produced, r.unique, r.dups, strings.Join(ms, "; "), r.errs)
}

// execute is one codec's whole scenario; a failing step records why and ends the run.
func (r *run) execute() {
	defer func() {
		if p := recover(); p != nil {
			if s, ok := p.(stepFailed); ok {
				r.fail("%s", string(s))
				return
			}
			panic(p)
		}
	}()
	began := time.Now()
	half := *messages / 2

	r.step.Store("create and describe the topic")
	r.createAndDescribeTopic()

	r.step.Store("produce the first half")
	producer := r.newProducer()
	r.produce(producer, 0, half)

	r.step.Store("member A alone consumes the first half")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := r.startMember(ctx, "A")
	r.waitFor("member A to consume the first half", func() bool { return r.unique >= half })
	if got := a.count(); got != half {
		r.fail("member A, alone in the group, consumed %d messages of the first %d", got, half)
	}

	r.step.Store("member B joins")
	b := r.startMember(ctx, "B")
	r.waitFor("a generation in which A and B split every partition", r.splitLocked)
	aBefore, bBefore := a.count(), b.count()

	r.step.Store("produce the second half")
	r.produce(producer, half, *messages)
	if err := producer.Close(); err != nil {
		r.fail("closing the producer: %v", err)
	}
	r.checkProducedOffsets()

	r.step.Store("both members consume the second half")
	r.waitFor("every message to be consumed", func() bool { return r.unique >= *messages })
	phase2 := []int{a.count() - aBefore, b.count() - bBefore}
	for i, n := range phase2 {
		if n == 0 {
			r.fail("member %s consumed nothing of the second half (phase-2 counts %v)", []string{"A", "B"}[i], phase2)
		}
	}

	r.step.Store("end offsets")
	ends := r.endOffsets()
	r.step.Store("log size")
	logBytes := r.logBytes()

	r.step.Store("commit and check the group while both members are in it")
	a.commit()
	b.commit()
	r.checkGroup("Stable", 2)
	r.checkCommitted(ends, "while the members are in the group")

	r.step.Store("members leave")
	cancel()
	a.close()
	b.close()
	r.checkGroup("Empty", 0)
	committed := r.checkCommitted(ends, "after both members left")

	r.step.Store("verify every record")
	r.checkEveryRecordOnce()

	r.mu.Lock()
	perPartition := make([]int, *partitions)
	for _, rec := range r.records {
		if rec.partition >= 0 && int(rec.partition) < *partitions {
			perPartition[rec.partition]++
		}
	}
	r.summary = map[string]any{
		"codec":               r.codecName,
		"strategy":            r.strategyName,
		"topic":               r.topic,
		"group":               r.group,
		"produced":            r.produced,
		"consumed_unique":     r.unique,
		"duplicates":          r.dups,
		"per_partition":       perPartition,
		"end_offsets":         ends,
		"log_bytes":           logBytes,
		"committed":           committed,
		"member_counts":       []int{a.consumed, b.consumed},
		"phase2_member_count": phase2,
		"member_a_sessions":   a.setups,
		"member_b_sessions":   b.setups,
		"elapsed_ms":          time.Since(began).Milliseconds(),
	}
	r.mu.Unlock()
	r.step.Store("done")
}

type stepFailed string

// must ends the run (its execute) with a failure.
func must(format string, args ...any) {
	panic(stepFailed(fmt.Sprintf(format, args...)))
}

// waitFor polls cond (called with r.mu held) until it holds, or fails the run.
func (r *run) waitFor(what string, cond func() bool) {
	deadline := time.Now().Add(*stepTimeout)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			must("waited %v for %s; %s", *stepTimeout, what, r.state())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- admin ----

func (r *run) createAndDescribeTopic() {
	retention := fmt.Sprint(3_600_000 + r.index*1000)
	maxMessage := "2097152"
	detail := &sarama.TopicDetail{
		NumPartitions:     int32(*partitions),
		ReplicationFactor: 1,
		ConfigEntries:     map[string]*string{"retention.ms": &retention, "max.message.bytes": &maxMessage},
	}
	if err := r.admin.CreateTopic(r.topic, detail, false); err != nil {
		must("CreateTopic %s: %v", r.topic, err)
	}
	if err := r.admin.CreateTopic(r.topic, detail, false); !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		r.fail("creating %s a second time: want TOPIC_ALREADY_EXISTS, got %v", r.topic, err)
	}

	metas, err := r.admin.DescribeTopics([]string{r.topic})
	if err != nil {
		must("DescribeTopics: %v", err)
	}
	if len(metas) != 1 || metas[0].Name != r.topic || !errors.Is(metas[0].Err, sarama.ErrNoError) {
		must("DescribeTopics %s: %+v", r.topic, metas)
	}
	ids := []int{}
	for _, p := range metas[0].Partitions {
		if !errors.Is(p.Err, sarama.ErrNoError) || p.Leader < 0 || len(p.Replicas) != 1 || len(p.Isr) != 1 {
			r.fail("DescribeTopics %s partition %d: err %v leader %d replicas %v isr %v", r.topic, p.ID, p.Err, p.Leader, p.Replicas, p.Isr)
		}
		ids = append(ids, int(p.ID))
	}
	sort.Ints(ids)
	if fmt.Sprint(ids) != fmt.Sprint(seq(*partitions)) {
		r.fail("DescribeTopics %s: partitions %v, want %v", r.topic, ids, seq(*partitions))
	}

	entries, err := r.admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: r.topic})
	if err != nil {
		must("DescribeConfig %s: %v", r.topic, err)
	}
	byName := map[string]sarama.ConfigEntry{}
	for _, e := range entries {
		byName[e.Name] = e
	}
	for name, want := range map[string]string{"retention.ms": retention, "max.message.bytes": maxMessage} {
		e, ok := byName[name]
		switch {
		case !ok:
			r.fail("DescribeConfig %s has no %s (got %d entries)", r.topic, name, len(entries))
		case e.Value != want || e.Default || e.Source != sarama.SourceTopic:
			r.fail("DescribeConfig %s %s: value %q default %v source %v, want %q set on the topic", r.topic, name, e.Value, e.Default, e.Source, want)
		}
	}
	if e, ok := byName["cleanup.policy"]; !ok || e.Value != "delete" || e.Source == sarama.SourceTopic {
		r.fail("DescribeConfig %s cleanup.policy: %+v (present %v), want the default delete", r.topic, e, ok)
	}

	topics, err := r.admin.ListTopics()
	if err != nil {
		must("ListTopics: %v", err)
	}
	listed, ok := topics[r.topic]
	if !ok {
		r.fail("ListTopics does not list %s", r.topic)
	} else {
		got := listed.ConfigEntries["retention.ms"]
		if listed.NumPartitions != int32(*partitions) || listed.ReplicationFactor != 1 || got == nil || *got != retention {
			r.fail("ListTopics %s: %d partitions, replication %d, retention.ms %v", r.topic, listed.NumPartitions, listed.ReplicationFactor, deref(got))
		}
	}
}

// ---- producing ----

func (r *run) newProducer() sarama.SyncProducer {
	c := baseConfig("sarama-check-producer-" + r.codecName)
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Net.MaxOpenRequests = 1
	c.Producer.Retry.Max = 5
	c.Producer.Retry.Backoff = 100 * time.Millisecond
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Compression = r.codec
	c.Producer.Partitioner = sarama.NewHashPartitioner
	p, err := sarama.NewSyncProducer([]string{*bootstrap}, c)
	if err != nil {
		must("NewSyncProducer (idempotent, %s): %v", r.codecName, err)
	}
	return p
}

// Record timestamps: explicit, a millisecond apart, and recent (retention.ms is an hour, and
// the broker deletes by record time).
var epoch = time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())

func (r *run) makeRecord(i int) *record {
	var key []byte
	switch i % 50 {
	case 0: // a null key
	case 25:
		key = []byte{} // an empty, not null, key
	default:
		key = fmt.Appendf(nil, "key-%03d", i%101)
	}
	value := fmt.Appendf(nil, "%s/%05d|", r.codecName, i)
	if i%1000 == 999 {
		// a large, incompressible value
		value = append(value, noise(i, 200_000)...)
	} else {
		value = append(value, bytes.Repeat([]byte("compressible payload "), 1+i%40)...)
	}
	seqBytes := binary.BigEndian.AppendUint64(nil, uint64(i))
	headers := []sarama.RecordHeader{
		{Key: []byte("seq"), Value: seqBytes},
		{Key: []byte("codec"), Value: []byte(r.codecName)},
		{Key: []byte("empty"), Value: []byte{}},
		{Key: []byte("null"), Value: nil},
		{Key: []byte("seq"), Value: []byte(fmt.Sprint(i))}, // a repeated header key, order kept
	}
	if i%7 == 3 {
		headers = nil // some records carry no headers at all
	}
	return &record{key: key, value: value, headers: headers, timestamp: epoch.Add(time.Duration(i) * time.Millisecond), partition: -1}
}

func noise(seed, n int) []byte {
	out := make([]byte, 0, n+sha256.Size)
	block := sha256.Sum256(fmt.Appendf(nil, "seed %d", seed))
	for len(out) < n {
		out = append(out, block[:]...)
		block = sha256.Sum256(block[:])
	}
	return out[:n]
}

func (r *run) produce(p sarama.SyncProducer, from, to int) {
	recs := r.records[from:to]
	toMessage := func(rec *record) *sarama.ProducerMessage {
		m := &sarama.ProducerMessage{Topic: r.topic, Value: sarama.ByteEncoder(rec.value), Headers: rec.headers, Timestamp: rec.timestamp}
		if rec.key != nil {
			m.Key = sarama.ByteEncoder(rec.key)
		}
		return m
	}
	// The first few one at a time (one-record batches), the rest in SendMessages batches.
	single := min(10, len(recs))
	for _, rec := range recs[:single] {
		part, off, err := p.SendMessage(toMessage(rec))
		if err != nil {
			must("SendMessage (%s): %v", r.codecName, err)
		}
		r.mu.Lock()
		rec.partition, rec.offset = part, off
		r.produced++
		r.mu.Unlock()
	}
	const batch = 500
	for start := single; start < len(recs); start += batch {
		chunk := recs[start:min(start+batch, len(recs))]
		msgs := make([]*sarama.ProducerMessage, len(chunk))
		for j, rec := range chunk {
			msgs[j] = toMessage(rec)
		}
		if err := p.SendMessages(msgs); err != nil {
			var pe sarama.ProducerErrors
			if errors.As(err, &pe) && len(pe) > 0 {
				must("SendMessages (%s): %d of %d failed, first: %v", r.codecName, len(pe), len(msgs), pe[0].Err)
			}
			must("SendMessages (%s): %v", r.codecName, err)
		}
		r.mu.Lock()
		for j, m := range msgs {
			chunk[j].partition, chunk[j].offset = m.Partition, m.Offset
		}
		r.produced += len(chunk)
		r.mu.Unlock()
	}
}

// checkProducedOffsets: one idempotent producer, one request in flight: each partition's
// offsets are 0, 1, 2, ... in the order the messages were sent.
func (r *run) checkProducedOffsets() {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := make([]int64, *partitions)
	for i, rec := range r.records {
		if rec.partition == -1 {
			r.failLocked("message %d was never acknowledged", i)
			continue
		}
		if rec.partition < 0 || int(rec.partition) >= *partitions {
			r.failLocked("message %d went to partition %d", i, rec.partition)
			continue
		}
		if rec.offset != next[rec.partition] {
			r.failLocked("message %d got partition %d offset %d, want %d (offsets in send order)", i, rec.partition, rec.offset, next[rec.partition])
		}
		next[rec.partition] = rec.offset + 1
	}
	for p, n := range next {
		if n == 0 {
			r.failLocked("no message went to partition %d", p)
		}
	}
}

func (r *run) endOffsets() []int64 {
	client, err := sarama.NewClient([]string{*bootstrap}, baseConfig("sarama-check-offsets-"+r.codecName))
	if err != nil {
		must("NewClient: %v", err)
	}
	defer client.Close()
	r.mu.Lock()
	want := make([]int64, *partitions)
	for _, rec := range r.records {
		if rec.partition >= 0 && int(rec.partition) < *partitions {
			want[rec.partition]++
		}
	}
	r.mu.Unlock()
	ends := make([]int64, *partitions)
	for p := range *partitions {
		newest, err := client.GetOffset(r.topic, int32(p), sarama.OffsetNewest)
		if err != nil {
			must("ListOffsets latest %s/%d: %v", r.topic, p, err)
		}
		oldest, err := client.GetOffset(r.topic, int32(p), sarama.OffsetOldest)
		if err != nil {
			must("ListOffsets earliest %s/%d: %v", r.topic, p, err)
		}
		if newest != want[p] || oldest != 0 {
			r.fail("ListOffsets %s/%d: earliest %d latest %d, want 0 and %d (the messages produced to it)", r.topic, p, oldest, newest, want[p])
		}
		ends[p] = newest
	}
	return ends
}

// logBytes is the size of the topic's log by DescribeLogDirs, the sum over its partitions,
// each of which must be listed and not empty. The codecs' sizes tell whether the batches
// were stored compressed.
func (r *run) logBytes() int64 {
	brokers, _, err := r.admin.DescribeCluster()
	if err != nil || len(brokers) == 0 {
		must("DescribeCluster: %d brokers, %v", len(brokers), err)
	}
	var ids []int32
	for _, b := range brokers {
		ids = append(ids, b.ID())
	}
	dirs, err := r.admin.DescribeLogDirs(ids)
	if err != nil {
		must("DescribeLogDirs %v: %v", ids, err)
	}
	sizes := map[int32]int64{}
	for broker, ds := range dirs {
		for _, d := range ds {
			if !errors.Is(d.ErrorCode, sarama.ErrNoError) {
				r.fail("DescribeLogDirs broker %d dir %s: %v", broker, d.Path, d.ErrorCode)
			}
			for _, t := range d.Topics {
				if t.Topic != r.topic {
					continue
				}
				for _, p := range t.Partitions {
					sizes[p.PartitionID] += p.Size
				}
			}
		}
	}
	var total int64
	for p := range *partitions {
		if sizes[int32(p)] <= 0 {
			r.fail("DescribeLogDirs: partition %d of %s has size %d (listed: %v)", p, r.topic, sizes[int32(p)], sizes)
		}
		total += sizes[int32(p)]
	}
	return total
}

// ---- consuming ----

type member struct {
	name  string
	run   *run
	group sarama.ConsumerGroup
	done  chan struct{}

	// guarded by run.mu
	sess     sarama.ConsumerGroupSession
	running  map[int32]bool
	consumed int
	setups   int
}

func (m *member) describe() string {
	var ps []int
	for p := range m.running {
		ps = append(ps, int(p))
	}
	sort.Ints(ps)
	return fmt.Sprintf("%s: %d sessions, claims %v, %d consumed", m.name, m.setups, ps, m.consumed)
}

func (m *member) count() int {
	m.run.mu.Lock()
	defer m.run.mu.Unlock()
	return m.consumed
}

func (r *run) startMember(ctx context.Context, name string) *member {
	c := baseConfig(fmt.Sprintf("sarama-check-%s-%s", r.codecName, name))
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.AutoCommit.Enable = true // also commits what a revoked claim marked
	c.Consumer.Offsets.AutoCommit.Interval = 250 * time.Millisecond
	c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{r.strategy()}
	c.Consumer.Group.Session.Timeout = 10 * time.Second
	c.Consumer.Group.Heartbeat.Interval = 200 * time.Millisecond
	c.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	c.Consumer.Group.Rebalance.Retry.Backoff = 200 * time.Millisecond
	c.Consumer.MaxWaitTime = 100 * time.Millisecond
	c.Consumer.Return.Errors = true
	g, err := sarama.NewConsumerGroup([]string{*bootstrap}, r.group, c)
	if err != nil {
		must("NewConsumerGroup %s (%s): %v", r.group, r.strategyName, err)
	}
	m := &member{name: name, run: r, group: g, done: make(chan struct{}), running: map[int32]bool{}}
	r.mu.Lock()
	r.members = append(r.members, m)
	r.mu.Unlock()
	go func() {
		for err := range g.Errors() {
			r.fail("member %s: consumer group error: %v", name, err)
		}
	}()
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{r.topic}, m); err != nil {
				if ctx.Err() == nil {
					r.fail("member %s: Consume: %v", name, err)
					time.Sleep(200 * time.Millisecond)
				}
			}
		}
	}()
	return m
}

// splitLocked: both members are consuming, and their claims are every partition, once.
func (r *run) splitLocked() bool {
	if len(r.members) != 2 {
		return false
	}
	seen := map[int32]int{}
	for _, m := range r.members {
		if len(m.running) == 0 {
			return false
		}
		for p := range m.running {
			seen[p]++
		}
	}
	if len(seen) != *partitions {
		return false
	}
	for _, n := range seen {
		if n != 1 {
			return false
		}
	}
	return true
}

func (m *member) Setup(sess sarama.ConsumerGroupSession) error {
	m.run.mu.Lock()
	defer m.run.mu.Unlock()
	m.sess = sess
	m.setups++
	return nil
}

func (m *member) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (m *member) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	r, p := m.run, claim.Partition()
	r.mu.Lock()
	if m.running[p] {
		r.failLocked("member %s was given partition %d twice at once", m.name, p)
	}
	m.running[p] = true
	for _, other := range r.members {
		if other != m && other.running[p] {
			r.failLocked("members %s and %s both hold partition %d", m.name, other.name, p)
		}
	}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(m.running, p)
		r.mu.Unlock()
	}()

	// A claim starts at the group's committed offset (or, before any commit, at the log
	// start, 0) and then reads every offset in turn.
	next := claim.InitialOffset()
	if next == sarama.OffsetOldest {
		next = 0
	}
	if next < 0 {
		r.fail("member %s partition %d: claim's initial offset %d", m.name, p, next)
	}
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			if msg.Topic != r.topic || msg.Partition != p {
				r.fail("member %s claim %d got a message of %s/%d", m.name, p, msg.Topic, msg.Partition)
			}
			if msg.Offset != next {
				r.fail("member %s partition %d: offset %d follows %d (claim began at %d)", m.name, p, msg.Offset, next-1, claim.InitialOffset())
			}
			next = msg.Offset + 1
			r.consumed(m, msg)
			sess.MarkMessage(msg, "")
		case <-sess.Context().Done():
			return nil
		}
	}
}

// consumed checks one delivered message against what was produced at its offset.
func (r *run) consumed(m *member, msg *sarama.ConsumerMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m.consumed++
	// Which message it is: its value says (the producer's acknowledgement, which says where
	// it went, may not be back yet; that is checked once everything is in).
	i, ok := r.indexOf(msg.Value)
	if !ok {
		r.failLocked("member %s consumed partition %d offset %d, a message this run did not produce (value %.40q)", m.name, msg.Partition, msg.Offset, msg.Value)
		return
	}
	rec := r.records[i]
	rec.consumedAt = append(rec.consumedAt, tp{msg.Partition, msg.Offset})
	if len(rec.consumedAt) == 1 {
		r.unique++
	} else {
		r.dups++
		r.failLocked("message %d consumed %d times, at %v, the last by member %s", i, len(rec.consumedAt), rec.consumedAt, m.name)
	}
	if !sameBytes(rec.key, msg.Key) {
		r.failLocked("message %d key: got %s, want %s", i, show(msg.Key), show(rec.key))
	}
	if !sameBytes(rec.value, msg.Value) {
		r.failLocked("message %d value: got %d bytes %.40q, want %d bytes %.40q", i, len(msg.Value), msg.Value, len(rec.value), rec.value)
	}
	if !msg.Timestamp.Equal(rec.timestamp) {
		r.failLocked("message %d timestamp: got %v, want %v", i, msg.Timestamp.UnixMilli(), rec.timestamp.UnixMilli())
	}
	if len(msg.Headers) != len(rec.headers) {
		r.failLocked("message %d: %d headers, want %d", i, len(msg.Headers), len(rec.headers))
		return
	}
	for j, h := range msg.Headers {
		want := rec.headers[j]
		if !sameBytes(h.Key, want.Key) || !sameBytes(h.Value, want.Value) {
			r.failLocked("message %d header %d: got %s=%s, want %s=%s", i, j, show(h.Key), show(h.Value), show(want.Key), show(want.Value))
		}
	}
}

func (r *run) indexOf(value []byte) (int, bool) {
	rest, ok := bytes.CutPrefix(value, []byte(r.codecName+"/"))
	if !ok || len(rest) < 6 || rest[5] != '|' {
		return 0, false
	}
	i := 0
	for _, c := range rest[:5] {
		if c < '0' || c > '9' {
			return 0, false
		}
		i = i*10 + int(c-'0')
	}
	return i, i < len(r.records)
}

// sameBytes tells null from empty: Kafka does, and so must the broker.
func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

func show(b []byte) string {
	if b == nil {
		return "null"
	}
	return fmt.Sprintf("%q", b)
}

func (m *member) commit() {
	m.run.mu.Lock()
	sess := m.sess
	m.run.mu.Unlock()
	sess.Commit()
}

func (m *member) close() {
	if err := m.group.Close(); err != nil {
		m.run.fail("member %s: closing the consumer group: %v", m.name, err)
	}
	select {
	case <-m.done:
	case <-time.After(*stepTimeout):
		must("member %s did not stop within %v of its group closing", m.name, *stepTimeout)
	}
}

func (r *run) checkGroup(state string, members int) {
	descs, err := r.admin.DescribeConsumerGroups([]string{r.group})
	if err != nil {
		must("DescribeConsumerGroups %s: %v", r.group, err)
	}
	if len(descs) != 1 {
		must("DescribeConsumerGroups %s: %d descriptions", r.group, len(descs))
	}
	d := descs[0]
	if !errors.Is(d.Err, sarama.ErrNoError) || d.GroupId != r.group || d.State != state || len(d.Members) != members || d.ProtocolType != "consumer" {
		r.fail("DescribeConsumerGroups %s: err %v state %q protocol type %q, %d members; want state %q, %d members, type consumer",
			r.group, d.Err, d.State, d.ProtocolType, len(d.Members), state, members)
	}
	if members == 0 {
		return
	}
	if want := r.strategy().Name(); d.Protocol != want {
		r.fail("DescribeConsumerGroups %s: protocol %q, want %q", r.group, d.Protocol, want)
	}
	owners := map[int32]int{}
	for id, md := range d.Members {
		a, err := md.GetMemberAssignment()
		if err != nil || a == nil {
			r.fail("DescribeConsumerGroups %s member %s: assignment %v, %v", r.group, id, a, err)
			continue
		}
		if len(a.Topics[r.topic]) == 0 {
			r.fail("DescribeConsumerGroups %s member %s: assigned nothing of %s (%v)", r.group, id, r.topic, a.Topics)
		}
		for _, p := range a.Topics[r.topic] {
			owners[p]++
		}
		if !strings.HasPrefix(md.ClientId, "sarama-check-"+r.codecName+"-") {
			r.fail("DescribeConsumerGroups %s member %s: client id %q", r.group, id, md.ClientId)
		}
	}
	if len(owners) != *partitions {
		r.fail("DescribeConsumerGroups %s: assignments cover %v, want every one of %d partitions", r.group, owners, *partitions)
	}
	for p, n := range owners {
		if n != 1 {
			r.fail("DescribeConsumerGroups %s: partition %d assigned %d times", r.group, p, n)
		}
	}
}

func (r *run) checkCommitted(ends []int64, when string) []int64 {
	resp, err := r.admin.ListConsumerGroupOffsets(r.group, map[string][]int32{r.topic: int32s(*partitions)})
	if err != nil {
		must("ListConsumerGroupOffsets %s (%s): %v", r.group, when, err)
	}
	got := make([]int64, *partitions)
	for p := range *partitions {
		b := resp.GetBlock(r.topic, int32(p))
		if b == nil {
			r.fail("ListConsumerGroupOffsets %s (%s): no offset for partition %d", r.group, when, p)
			got[p] = -1
			continue
		}
		if !errors.Is(b.Err, sarama.ErrNoError) {
			r.fail("ListConsumerGroupOffsets %s (%s): partition %d error %v", r.group, when, p, b.Err)
		}
		got[p] = b.Offset
	}
	if fmt.Sprint(got) != fmt.Sprint(ends) {
		r.fail("committed offsets of %s (%s): %v, want the end offsets %v", r.group, when, got, ends)
	}
	return got
}

// checkEveryRecordOnce: each message delivered once, from where the producer was told it
// went.
func (r *run) checkEveryRecordOnce() {
	r.mu.Lock()
	defer r.mu.Unlock()
	missing, misplaced := 0, 0
	for i, rec := range r.records {
		switch {
		case len(rec.consumedAt) == 0:
			missing++
			if missing <= 5 {
				r.failLocked("message %d (partition %d offset %d) was never consumed", i, rec.partition, rec.offset)
			}
		case rec.consumedAt[0] != tp{rec.partition, rec.offset}:
			misplaced++
			if misplaced <= 5 {
				r.failLocked("message %d was produced to partition %d offset %d but consumed from %v", i, rec.partition, rec.offset, rec.consumedAt)
			}
		}
	}
	if missing > 0 || misplaced > 0 {
		r.failLocked("of %d messages, %d never consumed, %d consumed from elsewhere than the producer was told", len(r.records), missing, misplaced)
	}
	if r.unique != *messages || r.produced != *messages {
		r.failLocked("produced %d, consumed %d unique, want %d", r.produced, r.unique, *messages)
	}
}

// ---- small things ----

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func int32s(n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(i)
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

type atomicString struct {
	mu sync.Mutex
	s  string
}

func (a *atomicString) Store(s string) { a.mu.Lock(); a.s = s; a.mu.Unlock() }
func (a *atomicString) Load() string   { a.mu.Lock(); defer a.mu.Unlock(); return a.s }
