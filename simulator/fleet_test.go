package simulator

import (
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func testConfig(seed uint64, devices int) Config {
	return Config{Seed: seed, Devices: devices, LowBatteryFraction: 0.3}.withDefaults()
}

func TestPlanIsDeterministic(t *testing.T) {
	d1, u1 := plan(testConfig(42, 50))
	d2, u2 := plan(testConfig(42, 50))
	if diff := cmp.Diff(d1, d2, cmp.AllowUnexported(Device{})); diff != "" {
		t.Errorf("same seed, different fleets (-first +second):\n%s", diff)
	}
	if !cmp.Equal(u1, u2) {
		t.Errorf("same seed, different users: %v vs %v", u1, u2)
	}
	d3, _ := plan(testConfig(43, 50))
	if d1[0].Name == d3[0].Name && d1[1].Name == d3[1].Name {
		t.Errorf("seeds 42 and 43 gave the same names %s, %s", d1[0].Name, d1[1].Name)
	}
}

func TestPlanShape(t *testing.T) {
	devices, users := plan(testConfig(1, 40))
	name := regexp.MustCompile(`^sim-[0-9a-f]{4}$`)
	mac := regexp.MustCompile(`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`)
	seen := map[string]bool{}
	bound, low := 0, 0
	for _, d := range devices {
		if !name.MatchString(d.Name) || seen[d.Name] {
			t.Errorf("name %q not sim-XXXX or repeated", d.Name)
		}
		seen[d.Name] = true
		if !mac.MatchString(d.Attributes["mac"]) || d.Attributes["region"] == "" {
			t.Errorf("%s attributes %v", d.Name, d.Attributes)
		}
		if d.BindUser != "" {
			bound++
			if d.BindRequestID == "" {
				t.Errorf("%s bound without a request id", d.Name)
			}
		}
		if d.LowBattery {
			low++
		}
	}
	if bound != 20 {
		t.Errorf("%d of 40 devices get a bind request, want 20 (BindFraction 0.5)", bound)
	}
	if len(users) != 5 {
		t.Errorf("%d users, want 5 (a quarter of the bound devices)", len(users))
	}
	if low == 0 || low == len(devices) {
		t.Errorf("%d of %d devices have a low battery with LowBatteryFraction 0.3", low, len(devices))
	}
	big, _ := plan(Config{Seed: 1, Devices: 5000}.withDefaults())
	if !regexp.MustCompile(`^sim-[0-9a-f]{8}$`).MatchString(big[0].Name) {
		t.Errorf("big fleet name %q, want 8 hex digits", big[0].Name)
	}
}

func TestSensorAnomaliesAndBattery(t *testing.T) {
	devices, _ := plan(testConfig(9, 20))
	for _, d := range devices {
		s := newSensor(d, 0.05)
		again := newSensor(d, 0.05)
		run, spikes := 0, 0
		var last Reading
		for i := range 400 {
			r := s.next()
			if r2 := again.next(); r2 != r {
				t.Fatalf("%s reading %d differs between two sensors of one seed: %+v vs %+v", d.Name, i, r, r2)
			}
			if r.Temperature > 80 {
				run++
				continue
			}
			if r.Temperature < 0 || r.Temperature > 45 {
				t.Errorf("%s normal temperature %v out of range", d.Name, r.Temperature)
			}
			if run > 0 {
				spikes++
				if run < 3 || run > 6 {
					t.Errorf("%s spike of %d readings, want 3 to 6", d.Name, run)
				}
			}
			run = 0
			last = r
		}
		if spikes == 0 {
			t.Errorf("%s: no spike in 400 readings at 5%%", d.Name)
		}
		if d.LowBattery && last.Battery >= 15 {
			t.Errorf("%s has a low battery but reads %d", d.Name, last.Battery)
		}
		if !d.LowBattery && last.Battery < 15 {
			t.Errorf("%s battery %d after 400 readings", d.Name, last.Battery)
		}
	}
	quiet := newSensor(devices[0], -1)
	for range 1000 {
		if r := quiet.next(); r.Temperature > 80 {
			t.Fatalf("AnomalyChance < 0 still spiked: %+v", r)
		}
	}
}
