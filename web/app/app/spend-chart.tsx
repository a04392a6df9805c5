"use client";
import { Bar, BarChart, CartesianGrid, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";

/**
 * An amount per UTC day: `spent` (dollars) sets the bar's height only; `label` is the exact amount, formatted from
 * integer micro-USD by the one money formatter.
 */
export function SpendChart({ data, label = "Spend" }: { data: { day: string; spent: number; label: string }[]; label?: string }) {
  return (
    <div className="h-64" role="img" aria-label={`${label} per day, last ${data.length} days`}>
      <ResponsiveContainer width="100%" height="100%">
        <BarChart data={data} margin={{ top: 4, right: 8, bottom: 0, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" vertical={false} stroke="#e2e8f0" />
          <XAxis dataKey="day" tick={{ fontSize: 11, fill: "#64748b" }} interval="preserveStartEnd" />
          <YAxis
            tick={{ fontSize: 11, fill: "#64748b" }}
            tickFormatter={(v: number) => `$${v === 0 ? "0" : v < 0.01 ? v.toFixed(6) : v.toFixed(2)}`}
            width={80}
          />
          <Tooltip
            formatter={(_v, _name, item) => [(item.payload as { label: string }).label, label]}
            labelFormatter={(l) => (typeof l === "string" ? `${l} (UTC)` : l)}
          />
          <Bar dataKey="spent" fill="#4f46e5" radius={[3, 3, 0, 0]} isAnimationActive={false} />
        </BarChart>
      </ResponsiveContainer>
    </div>
  );
}
