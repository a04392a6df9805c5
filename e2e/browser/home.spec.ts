import { expect, test } from "@playwright/test";

test("the portal's home page shows the live gateway status and the first-call snippet", async ({ page }, testInfo) => {
  await page.goto("/");
  await expect(page.getByRole("heading", { level: 1 })).toContainText("AI capacity");
  await expect(page.getByTestId("gateway-state")).toHaveText("Online");
  await expect(page.getByTestId("agents-connected")).toHaveText("0");
  await expect(page.getByText(/Checked \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC/)).toBeVisible();
  await expect(page.locator("pre code")).toContainText("http://127.0.0.1:18787/v1/chat/completions");
  await page.screenshot({ path: testInfo.outputPath("home.png"), fullPage: true });
});
