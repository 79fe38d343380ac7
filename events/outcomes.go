package events

import "time"

// Outcome event types.
const (
	TypeDeviceActivated  = "device.activated"
	TypeBindingCompleted = "binding.completed"
	TypeBindingRejected  = "binding.rejected"
	TypeAlertFiring      = "alert.firing"
	TypeAlertResolved    = "alert.resolved"
)

// Binding rejection reasons.
const (
	ReasonDeviceNotActive = "device_not_active"
	ReasonUnknownDevice   = "unknown_device"
	ReasonAlreadyBound    = "already_bound"
)

// DeviceActivated: the thing is registered and has connected; it is emitted once per device.
type DeviceActivated struct {
	ThingName        string            `json:"thingName"`
	ThingID          string            `json:"thingId,omitempty"`
	RegisteredAt     time.Time         `json:"registeredAt"`
	FirstConnectedAt time.Time         `json:"firstConnectedAt"`
	ActivatedAt      time.Time         `json:"activatedAt"`
	Attributes       map[string]string `json:"attributes,omitempty"`
}

// EventType implements Data.
func (DeviceActivated) EventType() string { return TypeDeviceActivated }

// BindingCompleted: UserID is bound to ThingName. It is emitted for every request that finds the
// binding in place, including a repeated request by the same user (AlreadyBound true).
type BindingCompleted struct {
	RequestID    string    `json:"requestId"`
	ThingName    string    `json:"thingName"`
	UserID       string    `json:"userId"`
	BoundAt      time.Time `json:"boundAt"`
	AlreadyBound bool      `json:"alreadyBound"`
}

// EventType implements Data.
func (BindingCompleted) EventType() string { return TypeBindingCompleted }

// BindingRejected: the request was refused for Reason (device_not_active, unknown_device,
// already_bound). The other user's id is never disclosed.
type BindingRejected struct {
	RequestID string `json:"requestId"`
	ThingName string `json:"thingName"`
	UserID    string `json:"userId"`
	Reason    string `json:"reason"`
	Detail    string `json:"detail,omitempty"`
}

// EventType implements Data.
func (BindingRejected) EventType() string { return TypeBindingRejected }

// AlertFiring: a policy's condition held for the required consecutive readings.
type AlertFiring struct {
	IncidentID  string    `json:"incidentId"`
	Policy      string    `json:"policy"`
	Severity    string    `json:"severity"`
	Metric      string    `json:"metric"`
	Comparison  string    `json:"comparison"` // above or below
	Threshold   float64   `json:"threshold"`
	Value       float64   `json:"value"`
	Since       time.Time `json:"since"`
	FiredAt     time.Time `json:"firedAt"`
	Consecutive int       `json:"consecutive"`
}

// EventType implements Data.
func (AlertFiring) EventType() string { return TypeAlertFiring }

// AlertResolved: the metric crossed the clear threshold; the incident is over.
type AlertResolved struct {
	IncidentID     string    `json:"incidentId"`
	Policy         string    `json:"policy"`
	Severity       string    `json:"severity"`
	Metric         string    `json:"metric"`
	Comparison     string    `json:"comparison"`
	ClearThreshold float64   `json:"clearThreshold"`
	Value          float64   `json:"value"`
	PeakValue      float64   `json:"peakValue"`
	FiredAt        time.Time `json:"firedAt"`
	ResolvedAt     time.Time `json:"resolvedAt"`
}

// EventType implements Data.
func (AlertResolved) EventType() string { return TypeAlertResolved }
