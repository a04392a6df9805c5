"use client";
import { Bar, BarChart, CartesianGrid, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";

/** Spend per UTC day; values are dollars for display only (the figures come from integer micro-USD). */
export function SpendChart({ data }: { data: { day: string; spent: number }[] }) {
  return (
    <div className="h-64" role="img" aria-label="Spend per day, last 30 days">
      <ResponsiveContainer width="100%" height="100%">
        <BarChart data={data} margin={{ top: 4, right: 8, bottom: 0, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" vertical={false} stroke="#e2e8f0" />
          <XAxis dataKey="day" tick={{ fontSize: 11, fill: "#64748b" }} interval="preserveStartEnd" />
          <YAxis tick={{ fontSize: 11, fill: "#64748b" }} tickFormatter={(v: number) => `$${v === 0 ? "0" : v < 0.01 ? v.toFixed(6) : v.toFixed(2)}`} width={80} />
          <Tooltip formatter={(v) => [`$${Number(v).toFixed(6)}`, "Spend"]} labelFormatter={(l) => `${String(l)} (UTC)`} />
          <Bar dataKey="spent" fill="#4f46e5" radius={[3, 3, 0, 0]} />
        </BarChart>
      </ResponsiveContainer>
    </div>
  );
}
