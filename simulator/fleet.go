package simulator

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/google/uuid"
)

// Device is one simulated device as planned from the seed.
type Device struct {
	Name       string            // thing name, also its MQTT client id
	Attributes map[string]string // registry attributes: mac, region
	EventID    string            // eventId of its registry event
	// BindUser is the app user who asks to bind it ("" when nobody does), with BindRequestID.
	BindUser      string
	BindRequestID string
	LowBattery    bool // its battery runs down below 15 within a few readings
	seed          [2]uint64
}

var regions = []string{"us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"}

// plan derives the whole fleet from cfg.Seed: same seed, same fleet.
func plan(cfg Config) (devices []Device, users []string) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], cfg.Seed)
	src := rand.NewChaCha8(key)
	rng := rand.New(src) // #nosec G404 -- seeded on purpose: same seed, same simulated fleet
	newUUID := func() string {
		id, err := uuid.NewRandomFromReader(src)
		if err != nil { // ChaCha8 never fails to read
			panic(fmt.Sprintf("simulator: uuid from seeded source: %v", err))
		}
		return id.String()
	}

	width, space := 4, 1<<16
	if cfg.Devices > space/16 { // keep collisions rare: 8 hex digits for big fleets
		width, space = 8, 1<<32
	}
	seen := make(map[string]bool, cfg.Devices)
	for i := range cfg.Devices {
		var name string
		for {
			name = fmt.Sprintf("%s%0*x", cfg.Prefix, width, rng.IntN(space))
			if !seen[name] {
				break
			}
		}
		seen[name] = true
		mac := make([]byte, 6)
		for j := range mac {
			mac[j] = byte(rng.IntN(256)) // #nosec G115 -- IntN(256) is 0..255
		}
		mac[0] = mac[0]&0xfe | 0x02 // locally administered, unicast
		devices = append(devices, Device{
			Name: name,
			Attributes: map[string]string{
				"mac":    fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]),
				"region": regions[rng.IntN(len(regions))],
			},
			EventID:    newUUID(),
			LowBattery: rng.Float64() < cfg.LowBatteryFraction,
			seed:       [2]uint64{cfg.Seed, uint64(i)},
		})
	}

	bound := cfg.bound()
	if bound == 0 {
		return devices, nil
	}
	userSeen := map[string]bool{}
	for len(users) < cfg.Users {
		u := fmt.Sprintf("user-%04x", rng.IntN(1<<16))
		if !userSeen[u] {
			userSeen[u] = true
			users = append(users, u)
		}
	}
	for k, i := range rng.Perm(len(devices))[:bound] {
		devices[i].BindUser = users[k%len(users)]
		devices[i].BindRequestID = newUUID()
	}
	return devices, users
}

// Reading is one telemetry message, as published on dt/<thing>/telemetry.
type Reading struct {
	Temperature float64 `json:"temperature"`
	Battery     int     `json:"battery"`
	TS          int64   `json:"ts"`
}

// sensor produces a device's readings: a temperature random walk with occasional spikes above 80, and a
// battery that drains (fast for LowBattery devices). Its sequence depends only on the seed.
type sensor struct {
	rng           *rand.Rand
	anomalyChance float64
	base, temp    float64
	battery       float64
	drain         float64
	spikeLeft     int
	spikeTemp     float64
	calm          int // readings before another spike may start: spikes never run into each other
}

func newSensor(d Device, anomalyChance float64) *sensor {
	rng := rand.New(rand.NewPCG(d.seed[0], d.seed[1])) // #nosec G404 -- seeded on purpose: simulated readings, reproducible per device
	s := &sensor{rng: rng, anomalyChance: anomalyChance}
	s.base = 18 + rng.Float64()*7 // 18-25 °C
	s.temp = s.base
	if d.LowBattery {
		s.battery = 16 + rng.Float64()*3 // below 15 after a few readings
		s.drain = 0.5
	} else {
		s.battery = 40 + rng.Float64()*60
		s.drain = 0.01
	}
	return s
}

func (s *sensor) next() Reading {
	// Mean-reverting walk: stays around the device's base temperature.
	s.temp += 0.1*(s.base-s.temp) + s.rng.NormFloat64()*0.3
	temp := s.temp
	switch {
	case s.spikeLeft > 0:
		s.spikeLeft--
		s.spikeTemp += s.rng.NormFloat64()
		temp = max(s.spikeTemp, 80.5)
		if s.spikeLeft == 0 {
			s.calm = 5
		}
	case s.calm > 0:
		s.calm--
	case s.anomalyChance > 0 && s.rng.Float64() < s.anomalyChance:
		s.spikeLeft = 2 + s.rng.IntN(4) // this reading and 2-5 more: 3 to 6 in all
		s.spikeTemp = 82 + s.rng.Float64()*12
		temp = s.spikeTemp
	}
	s.battery = max(s.battery-s.drain, 1)
	return Reading{
		Temperature: math.Round(temp*10) / 10,
		Battery:     int(math.Round(s.battery)),
	}
}
