package iotsql

func parseTimeFn(a []value, v2 bool) value   { return undef }
func timeToEpochFn(a []value, v2 bool) value { return undef }
