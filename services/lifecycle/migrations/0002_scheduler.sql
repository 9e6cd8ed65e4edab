-- (Timers and business clocks live in the shared timekeeping schema; see shared/db/migrations.)
SELECT 1;
